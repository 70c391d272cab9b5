"""``python -m ui.serve`` loads the sidebar's first model as the server starts, into the cache every session reads,
then opens every page once as a headless visitor (``ui.first_visit``), so each page's first result is cached."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import Runtime

from interp_core import WorkbenchError
from interp_core.core import loading
from ui import first_visit, serve, state


@pytest.fixture
def counted_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The specs ``ui.state.get_model`` loads from disk (its cache emptied before and after)."""
    loads: list[str] = []
    real = state.load_model

    def counting(spec: str, **kwargs: object):
        loads.append(spec)
        return real(spec, **kwargs)

    monkeypatch.setattr(state, "load_model", counting)
    state.get_model.clear()
    yield loads
    state.get_model.clear()


def test_preload_fills_the_cache_that_the_sidebar_reads(tiny_model_dirs: dict[str, Path], counted_loads: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = str(tiny_model_dirs["llama"]), str(tiny_model_dirs["gpt2"])
    monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", f"{first},{second}")  # the sidebar opens with the first
    assert serve.preload_model()
    assert counted_loads == [first]
    model = state.get_model(first)  # what the first visitor's sidebar asks for: no second load
    assert counted_loads == [first]
    assert model is state.get_model(first)


def test_preload_leaves_an_unconverted_default_model_to_the_page(counted_loads: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_ALLOWED_MODELS", raising=False)
    monkeypatch.setattr(loading, "default_model_ready", lambda: False)  # the page shows the conversion's progress
    assert not serve.preload_model()
    assert counted_loads == []


def test_a_failed_preload_is_left_for_the_sidebar_to_report(tmp_path: Path, counted_loads: list[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "no-such-model")
    monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", missing)
    assert not serve.preload_model()  # no exception escapes the server's start
    assert counted_loads == [missing]
    with pytest.raises(WorkbenchError):  # not cached as a success: the sidebar tries again and shows why
        state.get_model(missing)
    assert counted_loads == [missing, missing]


# --- the first visit ---------------------------------------------------------------------------------------


def _status(running: bool) -> ForwardMsg:
    msg = ForwardMsg()
    msg.session_status_changed.script_is_running = running
    return msg


def _element(kind: str, text: str) -> ForwardMsg:
    msg = ForwardMsg()
    element = msg.delta.new_element
    if kind == "exception":
        element.exception.type, element.exception.message = "ValueError", text
    else:
        element.alert.body, element.alert.format = text, Alert.ERROR if kind == "error" else Alert.INFO
    return msg


def test_the_visitor_waits_for_a_run_and_the_rerun_it_asks_for() -> None:
    visitor = first_visit._Visitor()
    assert not visitor.wait_for_run(0, timeout=0.2)  # nothing ran
    visitor.write_forward_msg(_status(True))
    assert not visitor.wait_for_run(0, timeout=0.2)  # still running

    def rerun_soon() -> None:  # a page that reruns itself (a preset) right after its first run ends
        time.sleep(first_visit.QUIET_S / 3)
        visitor.write_forward_msg(_status(True))
        time.sleep(first_visit.QUIET_S / 3)
        visitor.write_forward_msg(_status(False))

    visitor.write_forward_msg(_status(False))
    helper = threading.Thread(target=rerun_soon)
    helper.start()
    assert visitor.wait_for_run(0, timeout=5)
    helper.join()
    assert visitor.runs_started == 2 and not visitor.running  # it waited for the second run too
    assert not visitor.wait_for_run(2, timeout=0.2)  # a run that has not started yet is not over


def test_the_visitor_keeps_what_went_wrong() -> None:
    visitor = first_visit._Visitor()
    for kind, text in (("exception", "boom"), ("error", "the prompt is empty"), ("info", "all fine")):
        visitor.write_forward_msg(_element(kind, text))
    assert visitor.problems == ["ValueError: boom", "the prompt is empty"]


def test_only_the_visitors_script_threads_yield_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(first_visit.os, "setpriority", lambda *args: calls.append(args))
    session = type("Context", (), {"session_id": "visitor"})()
    monkeypatch.setattr(first_visit, "get_script_run_ctx", lambda: None)  # not a script run
    first_visit.yield_to_people()
    monkeypatch.setattr(first_visit, "get_script_run_ctx", lambda: session)
    first_visit.yield_to_people()  # a person's session
    assert calls == []
    monkeypatch.setattr(first_visit, "_visitor_sessions", {"visitor"})
    first_visit.yield_to_people()
    assert calls == [(first_visit.os.PRIO_PROCESS, threading.get_native_id(), first_visit.NICE)]


def test_only_results_given_to_the_visitors_pages_are_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(first_visit, "results_used", set())
    session = type("Context", (), {"session_id": "visitor"})()
    monkeypatch.setattr(first_visit, "get_script_run_ctx", lambda: session)
    first_visit.note_result("a person's result")
    monkeypatch.setattr(first_visit, "_visitor_sessions", {"visitor"})
    first_visit.note_result("the visit's result")
    assert first_visit.results_used == {"the visit's result"}


def test_a_failed_visit_leaves_one_line_and_the_server_running(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def fails(paths: object) -> None:
        raise TimeoutError("the runtime's event loop did not answer")

    monkeypatch.setattr(first_visit, "visit_every_page", fails)
    monkeypatch.setenv("WORKBENCH_KEEP_RESULTS", "0")
    monkeypatch.setattr(first_visit, "results_used", {"a key noted before the failure"})
    serve.visit_pages(object())  # no exception escapes the server's start thread
    assert "first visit: stopped after" in capsys.readouterr().out
    assert first_visit.results_used == set()  # the noted keys (and the requests they hold) are let go


def test_a_runtime_that_never_starts_leaves_a_zero_visit_line(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(first_visit, "_runtime", lambda timeout: None)
    monkeypatch.setenv("WORKBENCH_KEEP_RESULTS", "0")
    serve.visit_pages(object())  # no exception escapes the server's start thread
    assert "first visit: 0 of " in capsys.readouterr().out


@pytest.fixture
def streamlit_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The server's Streamlit runtime for ``app.py`` on an event loop of its own, without the web server: what
    ``ui.serve`` runs, minus the websocket that a browser would use."""
    from streamlit.runtime import RuntimeConfig
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.pages_manager import PagesManager

    monkeypatch.setattr(PagesManager, "uses_pages_directory", False)  # as ui.serve sets it
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runtime = Runtime(RuntimeConfig(script_path=str(serve.APP), media_file_storage=MemoryMediaFileStorage("/media"),
                                    uploaded_file_manager=MemoryUploadedFileManager("/upload")))
    try:
        asyncio.run_coroutine_threadsafe(runtime.start(), loop).result(timeout=60)
        yield runtime
    finally:
        runtime.stop()
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(runtime.stopped, 60), loop).result(timeout=90)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        Runtime._instance = None


def test_the_first_visit_leaves_every_pages_first_result_cached(streamlit_runtime: Runtime, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page runs headless without a problem, and a second visitor, after a restart that read the first visit's
    kept results back (``ui.kept_results``), then computes nothing at all: whatever a page shows first is in the
    server-wide result cache, kept and read back (and the visitor ran exactly the pages' own requests)."""
    from interp_core.testing.tiny_models import save_tiny_model
    from ui import jobs, kept_results
    from ui.navigation import page_files, page_slug

    # weights of its own (seed 7), so no other test's results for the shared tiny models are in the cache already
    model_dir = save_tiny_model("gpt2", tmp_path / "gpt2", seed=7)
    monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", str(model_dir))  # the sidebar's first model
    paths = ["", *(page_slug(f) for f in page_files()[1:])]
    before = set(jobs._results)
    lowered: list[int] = []  # the script threads the visit ran on, each lowered once per run
    monkeypatch.setattr(first_visit.os, "setpriority", lambda which, thread, nice: lowered.append(thread))
    try:
        visited = first_visit.visit_every_page(paths)
        assert list(visited) == paths
        assert len(lowered) >= len(paths) and threading.get_native_id() not in lowered
        assert {path: problems for path, (_, problems) in visited.items() if problems} == {}
        computed = set(jobs._results) - before
        assert len(computed) >= len(paths)  # every page has at least one result of its own

        model = state.get_model(str(model_dir))
        ours = {key for key in computed if key[1] == model.fingerprint}
        assert ours <= first_visit.results_used  # every result the pages were given was noted for keeping
        assert kept_results.keep(model, first_visit.results_used, set()) == len(ours)
        for key in computed:  # a restart: the cache is empty, then the kept results are read back
            jobs._results.pop(key, None)
        assert kept_results.restore(model) == ours

        def nothing_left_to_compute(key: object, flight: object, compute: object) -> object:
            raise AssertionError(f"a page's first result was not cached: {key}")

        monkeypatch.setattr(jobs, "_lead", nothing_left_to_compute)
        again = first_visit.visit_every_page(paths)
        assert {path: problems for path, (_, problems) in again.items() if problems} == {}
        assert list(again) == paths
    finally:
        for key in set(jobs._results) - before:  # other tests in this process compute their own
            jobs._results.pop(key, None)
