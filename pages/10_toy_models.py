"""What circuits does a transformer learn on a task we fully understand?

Train tiny transformers on three tasks (reverse-and-increment, pattern copying, induction), then take
them apart: holdout accuracy, ablations, attention patterns, predictions before and after the MLP.
"""

from __future__ import annotations

import secrets

import altair as alt
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError, list_toy_models
from interp_core.core.head_id import head_label
from interp_core.core.loading import is_shipped_toy, toy_model_dir, user_toy_dir, valid_toy_name
from interp_core.techniques.toy.analysis import ABLATIONS, analyse_copying, analyse_reverse_increment, example_prompt
from interp_core.techniques.toy.tasks import TASKS, get_task
from interp_core.techniques.toy.train import CURVE_POINTS, CurvePoint, read_task_record, task_of_toy, train_toy
from ui import jobs, state
from ui.charts import grid_frame, heatmap
from ui.config import allowed_models
from ui.page import caution, explain, header, show_chart

WRITE_UP = {"none": 1.0, "mlp_weights_zero": 0.1767, "attn_weights_zero": 0.2919}  # the seed documents' reported numbers
TRAINED = "_toy_trained_here"  # session key: names this session trained, which it may retrain in place

header("Toy Models", "What circuits does a transformer learn on a task we fully understand?")
explain(
    """
Each task's answer is known exactly, so we can check what the model learned against it.
**Train** a model here (or use the shipped copy), then **take it apart** below.

**Prompt format** for these models on every other page: symbols separated by spaces, starting
with `BOS`, e.g. `BOS 0 1 2 3`: each word is one token
(`BOS` included; anything unknown becomes `UNK`). Pick `toy:NAME` in the sidebar's model box
and paste an example prompt (the button below does both).
""",
    label="What this page does",
)

task = st.selectbox("Task", list(TASKS), key="toy_task", bind="query-params")
spec = get_task(task)
st.caption(
    f"{spec.summary} Model: {spec.description}, context {spec.n_ctx}; "
    f"{spec.n_train:,} training / {spec.n_holdout:,} holdout sequences."
)


def curve_chart(history: list[dict], title: str) -> tuple[alt.Chart, pd.DataFrame]:
    """Training and holdout loss (log scale) and holdout accuracy against epochs, from curve points."""
    df = pd.DataFrame(history)
    long = df.melt(id_vars="epoch", value_vars=["train_loss", "holdout_loss"], var_name="set", value_name="loss (nats)")
    loss = (
        alt.Chart(long, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q"),
            y=alt.Y("loss (nats):Q", scale=alt.Scale(type="log")),
            color=alt.Color("set:N", scale=alt.Scale(domain=["train_loss", "holdout_loss"], range=["#1f77b4", "#ff7f0e"])),
            tooltip=["epoch", "set", alt.Tooltip("loss (nats):Q", format=".4f")],
        )
        .properties(height=240, width=380)
    )
    accuracy = (
        alt.Chart(df, title="Holdout accuracy")
        .mark_line(point=alt.OverlayMarkDef(color="#2ca02c"), color="#2ca02c")
        .encode(
            x=alt.X("epoch:Q"),
            y=alt.Y("holdout_accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            tooltip=["epoch", alt.Tooltip("holdout_accuracy:Q", format=".2%", title="holdout accuracy")],
        )
        .properties(height=240, width=300)
    )
    return alt.hconcat(loss, accuracy), df


# --- training ------------------------------------------------------------------------------
def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be saved by this session, or None when it can."""
    if not valid_toy_name(name):
        return f"'{name}' cannot be a model name: use letters, digits, '-', '_' or '.', up to 64 characters, no spaces."
    if is_shipped_toy(name):
        return f"`toy:{name}` is a shipped model; pick another name so that it stays as shipped."
    target = user_toy_dir() / name
    taken = target.exists() and (not target.is_dir() or any(target.iterdir()))
    if taken and name not in st.session_state.get(TRAINED, set()):
        return (f"A toy model named `toy:{name}` already exists (another participant may have trained it); pick another "
                "name. Models you trained in this session can be retrained under the same name.")
    return None


def train_section() -> None:
    st.subheader("Train")
    if allowed_models():
        st.info("Training is off on this workshop server: a hosted server does not train models (a run keeps a CPU busy "
                "for minutes and saves files on the server). The host can train one beforehand and add it to "
                "WORKBENCH_ALLOWED_MODELS, e.g. `toy:reverse-increment`.")
        return
    cols = st.columns(6)
    epochs = cols[0].number_input("Epochs", 1, 1000, spec.epochs, key=f"toy_ep_{task}", bind="query-params")
    lr = cols[1].number_input("Learning rate", 1e-5, 0.5, spec.lr, format="%.4f", key=f"toy_lr_{task}", bind="query-params")
    batch = cols[2].number_input("Batch size", 1, 8192, spec.batch_size, key=f"toy_bs_{task}", bind="query-params")
    decay = cols[3].number_input("Weight decay", 0.0, 1.0, spec.weight_decay, format="%.3f", key=f"toy_wd_{task}", bind="query-params")
    seed = cols[4].number_input("Seed", 0, 2**31 - 1, 0, key=f"toy_seed_{task}", bind="query-params")
    # A default unique to this session: two participants who keep it must not overwrite each other.
    default_name = st.session_state.setdefault(f"_toy_default_name_{task}", f"{task}-{secrets.token_hex(3)}")
    name = cols[5].text_input("Save as", default_name, key=f"toy_name_{task}", bind="query-params")
    st.caption(
        f"Saved under `{user_toy_dir()}`; it then appears in the sidebar's model list as `toy:NAME`. The same seed on the "
        "CPU gives the same model. One epoch = one pass over the training set; the learning rate decays (cosine) to a tenth; the "
        f"holdout set is checked {CURVE_POINTS} times along the way (the live curve)."
    )
    if not st.button("Train", key="toy_train", type="primary"):
        return
    problem = name_problem(name or "")
    if problem:
        st.error(problem)
        return
    trained_here: set[str] = st.session_state.setdefault(TRAINED, set())
    overwrite = name in trained_here  # only this session's own model is replaced
    out_dir = user_toy_dir() / name
    live = st.empty()
    logs: list[dict] = []

    def on_point(point: CurvePoint) -> None:  # called from this script thread, so writing to `live` is safe
        logs.append(point.__dict__)
        live.altair_chart(curve_chart(logs, f"Training {name}")[0])

    key = ("toy-train", task, int(epochs), float(lr), int(batch), float(decay), int(seed), str(out_dir))
    try:
        result = jobs.cached_job(
            f"Training {name}",
            key,
            lambda progress: train_toy(task, epochs=int(epochs), lr=float(lr), batch_size=int(batch),
                                       weight_decay=float(decay), seed=int(seed), out_dir=out_dir, overwrite=overwrite,
                                       on_progress=progress, on_point=on_point),
            heavy=True,
        )
    except WorkbenchError as error:
        st.error(str(error))
        return
    trained_here.add(name)
    live.empty()
    state.get_model.clear(f"toy:{name}")  # a retrained name must not serve the old weights
    st.session_state["toy_pick"] = f"toy:{name}"
    st.success(
        f"Trained `toy:{name}` in {result.seconds:.0f} s on {result.device}: final training loss "
        f"{result.final_loss:.4f} nats, holdout accuracy {result.holdout_accuracy:.2%}. Analysed below."
    )


train_section()

# --- taking it apart -----------------------------------------------------------------------
st.subheader("Take it apart")


fixed = allowed_models()
models = [m for m in list_toy_models() if task_of_toy(m) == task and (not fixed or m in fixed)]
if not models:
    if fixed:  # a workshop server analyses only the models its host allowed
        st.info(f"This workshop server offers no {task} toy model. The host can add one to WORKBENCH_ALLOWED_MODELS; "
                f"allowed here: {', '.join(fixed)}.")
    else:
        st.info(f"No {task} model yet: train one above.")
    st.stop()
if st.session_state.get("toy_pick") not in models:
    st.session_state.pop("toy_pick", None)
pick = st.selectbox("Toy model to analyse", models, key="toy_pick", bind="query-params")
directory = toy_model_dir(pick)
record = read_task_record(directory) or {}
stamp = (directory / "model.safetensors").stat().st_mtime if (directory / "model.safetensors").is_file() else 0.0
data_seed = int(record.get("hyperparameters", {}).get("seed", 0))


def use_in_sidebar(model_spec: str, prompt: str) -> None:
    st.session_state["model"] = model_spec
    st.session_state["prompt"] = prompt


example = example_prompt(task, data_seed)
left, right = st.columns([3, 1])
left.markdown(f"Example prompt (a holdout sequence): `{example}`")
right.button("Open in the sidebar", help="Select this model and this prompt in the sidebar, for the other pages", key="toy_use", on_click=use_in_sidebar, args=(pick, example))

if record.get("history"):
    hyper = record.get("hyperparameters", {})
    chart, df = curve_chart(record["history"], f"How {pick} was trained")
    show_chart(chart, df, "toy_training_curve",
               caption=f"From {directory.name}/toy_task.json: {hyper}, {record.get('seconds', 0):.0f} s on {record.get('device')}. "
                       f"Final training loss {record.get('final_loss', float('nan')):.4f} nats."
                       + (" The loss cannot fall far: most tokens are random. The sudden jump in holdout accuracy is the "
                          "induction phase change, when the previous-token and induction heads form together."
                          if task == "induction" else ""))


@st.cache_data(show_spinner=False, max_entries=16)
def cached_analysis(model_spec: str, task_name: str, data_seed: int, stamp: float) -> object:
    model = state.get_model(model_spec)
    if task_name == "reverse-increment":
        return analyse_reverse_increment(model, seed=data_seed)
    return analyse_copying(model, task_name, seed=data_seed)


try:
    with st.spinner("Running the holdout set through the model…"):
        analysis = cached_analysis(pick, task, data_seed, stamp)
except WorkbenchError as error:
    st.error(str(error))
    st.stop()


def reverse_increment_view(result: object) -> None:
    """Accuracy, ablation table, attention anti-diagonal and pre/post-MLP reads."""
    a, b, c = st.columns(3)
    a.metric("Holdout accuracy (per output token)", f"{result.holdout_accuracy:.2%}")
    b.metric("Whole sequences right", f"{result.sequence_accuracy:.2%}")
    c.metric("Holdout sequences", f"{result.n_holdout:,}")

    st.markdown("**Ablations** (accuracy per output token on the whole holdout set)")
    table = pd.DataFrame({
        "condition": [ABLATIONS[k] for k in result.ablations],
        "this model": [result.ablations[k] for k in result.ablations],
        "write-up reports": [WRITE_UP[k] for k in result.ablations],
    })
    st.dataframe(table.style.format({"this model": "{:.2%}", "write-up reports": "{:.2%}"}), hide_index=True)
    st.caption("Zeroing W_out leaves the MLP adding only b_out; zeroing W_O leaves attention adding only b_O. "
               "Chance is 25 %. The write-up's numbers are for its own model; another seed lands elsewhere.")

    df = grid_frame(result.attention, result.query_labels, result.key_labels, "output (query)", "input (key)", "attention")
    chart = heatmap(df, "input (key)", "output (query)", "attention", x_sort=result.key_labels, y_sort=result.query_labels,
                    domain=(0.0, 1.0), title="Mean attention from each output position to every position")
    show_chart(chart, df, "toy_ri_attention",
               caption="Query y_i is the position whose logits predict y_i (it holds y_{i-1}, or x7 for y0). "
                       "The answer needs x_{7-i}: an anti-diagonal from (y1, x6) to (y7, x0) means attention fetches it. "
                       "y0's position holds x7 itself, so it needs no attention and may look anywhere.")

    series = {
        "before MLP = answer": result.pre_mlp_accuracy, "before MLP = source": result.pre_mlp_copies,
        "after MLP = answer": result.post_mlp_accuracy, "after MLP = source": result.post_mlp_copies,
    }
    pre = pd.DataFrame([{"output": label, "read": name, "fraction": float(values[i])}
                        for name, values in series.items() for i, label in enumerate(result.query_labels)])
    chart = (
        alt.Chart(pre, title="What the residual stream predicts before and after the MLP")
        .mark_bar()
        .encode(
            x=alt.X("output:N", sort=result.query_labels, title="output position"),
            xOffset=alt.XOffset("read:N", sort=list(series)),
            y=alt.Y("fraction:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title="fraction of holdout"),
            color=alt.Color("read:N", sort=list(series), scale=alt.Scale(scheme="paired")),
            tooltip=["output", "read", alt.Tooltip("fraction:Q", format=".2%")],
        )
        .properties(height=280)
    )
    show_chart(chart, pre, "toy_ri_pre_post_mlp",
               caption="unembed(ln_final(residual)) read at each output position, before and after the MLP, "
                       "compared with the answer and with the copied source token.")
    src = grid_frame(result.source_vs_pre_mlp, [str(v) for v in range(4)], result.vocab, "source x_{7-i}", "predicted before MLP", "fraction")
    chart = heatmap(src, "predicted before MLP", "source x_{7-i}", "fraction", domain=(0.0, 1.0), x_sort=result.vocab,
                    title="Before the MLP: predicted token for each source value (all output positions)")
    show_chart(chart, src, "toy_ri_source_vs_pre",
               caption="A diagonal means attention alone copies the source; a shifted diagonal (v -> v+1) means it already increments.")


def copying_view(result: object) -> None:
    """Accuracy, per-head stripe scores and one example's patterns."""
    a, b = st.columns(2)
    a.metric("Holdout accuracy (predictable positions)", f"{result.holdout_accuracy:.2%}")
    b.metric("Holdout sequences", f"{result.n_holdout:,}")
    scores = pd.DataFrame({"head": result.head_labels, "previous-token": result.previous_token,
                           "induction (q - period + 1)": result.induction, "same token (q - period)": result.same_token,
                           "on earlier copies of the answer": result.on_answer,
                           "BOS": result.first_token})
    long = scores.melt(id_vars="head", var_name="score", value_name="mean attention")
    chart = (
        alt.Chart(long, title="Where each head looks (mean attention on 256 holdout sequences)")
        .mark_bar()
        .encode(x=alt.X("head:N"), xOffset="score:N", y=alt.Y("mean attention:Q", scale=alt.Scale(domain=[0, 1])),
                color="score:N", tooltip=["head", "score", alt.Tooltip("mean attention:Q", format=".3f")])
        .properties(height=260)
    )
    show_chart(chart, long, "toy_head_scores",
               caption="Induction = attention from a query to the token right after the previous occurrence of its own token "
                       "(one period back plus one), over the positions where accuracy is counted. The textbook circuit is a "
                       "layer-0 previous-token head feeding a layer-1 induction head; a periodic pattern can also be "
                       "copied from any earlier period, which 'on earlier copies of the answer' counts.")
    tokens = [f"{i}:{t}" for i, t in enumerate(result.example_tokens)]
    frames = []
    for layer in range(result.example_patterns.shape[0]):
        for head in range(result.example_patterns.shape[1]):
            df = grid_frame(result.example_patterns[layer, head], tokens, tokens, "query", "key", "attention")
            df["head"] = head_label(layer, head)
            frames.append(df)
    df = pd.concat(frames)
    chart = heatmap(df, "key", "query", "attention", x_sort=tokens, y_sort=tokens, domain=(0.0, 1.0),
                    tooltip=["head", "query", "key", alt.Tooltip("attention:Q", format=".3f")]).properties(width=260, height=260)
    show_chart(chart.facet(facet="head:N", columns=2), df, "toy_example_patterns",
               caption=f"One holdout sequence (period {result.example_period}). An induction head draws a stripe one "
                       "period left of the diagonal, plus one; a previous-token head hugs the diagonal.")


if task == "reverse-increment":
    reverse_increment_view(analysis)
else:
    copying_view(analysis)
caution("These are averages over the holdout set of one trained model; retrain with another seed to see how much "
        "of the circuit is a matter of luck. Attention patterns say where a head reads, not what it writes.")
