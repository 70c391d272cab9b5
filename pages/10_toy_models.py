"""What circuits does a transformer learn on a task we fully understand?

Train tiny transformers on three tasks (reverse-and-increment, pattern copying, induction), then take
them apart: holdout accuracy, ablations, attention patterns, predictions before and after the MLP.
"""

from __future__ import annotations

import secrets

import streamlit as st

from interp_core import WorkbenchError, list_toy_models
from interp_core.core.loading import user_toy_dir
from interp_core.techniques.toy.analysis import ToyAnalysisRequest
from interp_core.techniques.toy.record import TrainingRecordRequest
from interp_core.techniques.toy.tasks import TASKS, get_task
from interp_core.techniques.toy.train import CURVE_POINTS, ToyTrainRequest, save_name_problem, task_of_toy
from ui import page, runner, state
from ui import toy_views as views
from ui.config import allowed_models

TRAINED = "_toy_trained_here"  # session key: names this session trained, which it may retrain in place
PRESETS = {  # the shipped model of each task
    "Reverse-increment": {"toy_task": "reverse-increment", "toy_pick": "toy:reverse-increment"},
    "Pattern copy": {"toy_task": "pattern-copy", "toy_pick": "toy:pattern-copy"},
    "Induction": {"toy_task": "induction", "toy_pick": "toy:induction"},
}

page.header("Toy Models", "What circuits does a transformer learn on a task we fully understand?")
page.explain(
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
page.presets(PRESETS, key="toy", default="Reverse-increment", label="Shipped models", help_of="toy_pick")
task = st.selectbox("Task", list(TASKS), key="toy_task", bind="query-params")
spec = get_task(task)
st.caption(f"{spec.summary} Model: {spec.description}, context {spec.n_ctx}; "
           f"{spec.n_train:,} training / {spec.n_holdout:,} holdout sequences.")


# --- training ------------------------------------------------------------------------------
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
    trained_here: set[str] = st.session_state.setdefault(TRAINED, set())
    mine = name in trained_here  # only this session's own model is replaced
    problem = save_name_problem(name or "", may_replace=mine)
    if problem:
        st.error(problem)
        return
    live = st.empty()
    try:  # run_id: every click trains anew, never a cached result for weights replaced since
        request = ToyTrainRequest(task, str(user_toy_dir() / name), mine, int(epochs), float(lr), int(batch), float(decay), int(seed),
                                  run_id=secrets.token_hex(8), on_point=views.live_curve(live, f"Training {name}"))
    except WorkbenchError as error:
        st.error(str(error))
        return
    result = runner.run(None, request)  # builds its own model: no loaded model
    live.empty()
    if result is None:
        return
    trained_here.add(name)
    state.get_model.clear(f"toy:{name}")  # reloaded from the new files: a new fingerprint, so no page serves old results
    st.session_state["toy_pick"] = f"toy:{name}"
    st.success(f"Trained `toy:{name}` in {result.seconds:.0f} s on {result.device}: final training loss "
               f"{result.final_loss:.4f} nats, holdout accuracy {result.holdout_accuracy:.2%}. Analysed below.")


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
try:
    toy = state.get_model(pick)
except WorkbenchError as error:
    st.error(f"Could not load `{pick}`: {error}")
    st.stop()
record = runner.run_or_stop(toy, TrainingRecordRequest())  # its toy_task.json: how it was trained
# The data seed it was trained with: its holdout split holds sequences it never saw.
analysis = runner.run_or_stop(toy, ToyAnalysisRequest(task, record.seed))


def use_in_sidebar(model_spec: str, prompt: str) -> None:
    st.session_state["model"] = model_spec
    st.session_state["prompt"] = prompt


left, right = st.columns([3, 1])
left.markdown(f"Example prompt (a holdout sequence): `{analysis.example_prompt}`")
right.button("Open in the sidebar", help="Select this model and this prompt in the sidebar, for the other pages", key="toy_use",
             on_click=use_in_sidebar, args=(pick, analysis.example_prompt))
views.show_training_record(record, pick, task)
if task == "reverse-increment":
    views.reverse_increment_view(analysis)
else:
    views.copying_view(analysis)
page.caution("These are averages over the holdout set of one trained model; retrain with another seed to see how much "
             "of the circuit is a matter of luck. Attention patterns say where a head reads, not what it writes.")
