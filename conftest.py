"""Project-wide pytest set-up: run name, targets, the results store and the pytest-html page.

Targets: ``--targets FILE``, else ``$SAM3M4_TARGETS``, else ``acceptance/targets.yaml`` in or above the cwd
(:func:`sam3m4.results.targets.load_targets_file`, the rule the CLI and the report use), loaded once at
start-up: a missing or broken file is a usage error naming the file and the key, before any test runs. The
environment table of the HTML page and the report's header name the file and its sha256.

Every gate test records what it measured through the ``gate`` fixture; the record goes to
``reports/<run>/results.jsonl`` and to the test's ``user_properties``, from which the HTML page's
Measured / Target / Provenance columns are filled. At the end of the session (on the controller,
also under pytest-xdist) ``reports/<run>/report.md`` and its plots are rendered from the same store, and the
page opens with the release verdict, the gate matrix and the plots (:mod:`sam3m4.report.release`).

    pytest --run test --fresh-results        # what `make test` does (plus --html and -n 2)
"""

from __future__ import annotations

import html
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any test imports torch: see sam3m4/__init__.py

import pytest  # noqa: E402

import sam3m4  # noqa: F401  (offline by default: HF_HUB_OFFLINE=1 before any test imports transformers)

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    group = parser.getgroup("sam3m4")
    group.addoption("--run", default=os.environ.get("SAM3M4_RUN", "test"),
                    help="run name: results go to reports/<run>/ (default: test)")
    group.addoption("--fresh-results", action="store_true",
                    help="move an existing reports/<run>/results.jsonl aside before the session")
    group.addoption("--release", action="store_true",
                    help="release mode: gates that cannot be measured here fail instead of skipping")
    group.addoption("--targets", default=None,
                    help="release targets file (default: $SAM3M4_TARGETS, else acceptance/targets.yaml in or above "
                         "the current folder)")
    group = parser.getgroup("sam3m4 stage3")
    group.addoption("--stage3-teacher", default=None,
                    help="SAM 3 weights dir or hub id to gate (default: bootstrap the embedded tiny teacher)")
    group.addoption("--stage3-student", default=None,
                    help="Phase 2 student checkpoint to gate (default: distill one from the teacher)")
    group.addoption("--stage3-data", default=None,
                    help="dataset root with saco_image/val.json (default: the embedded synthetic dataset)")
    group.addoption("--stage3-num-val", type=int, default=300, help="val pairs scored for teacher and student")
    group = parser.getgroup("sam3m4 stage4")
    group.addoption("--stage4-dir", default=None,
                    help="folder of `sam3m4 quantize` outputs, one <mode>/ each (default: build a small set)")
    group.addoption("--stage4-data", default=None,
                    help="dataset root with saco_image/val.json (default: the checkpoint's data_root)")
    group.addoption("--stage4-num-val", type=int, default=200, help="val pairs every mode is scored on")
    group = parser.getgroup("sam3m4 stage5")
    group.addoption("--stage5-quantized", default=None,
                    help="`sam3m4 quantize` output exported when the run has no stage5 record for a case "
                         "(default: the Stage 4 small set)")
    group.addoption("--stage5-decision", default=None,
                    help="Stage 4's decision.json (`sam3m4 quantize --mode compare` output): its per-backend decisions "
                         "are the cases gated (the .pte that ship); --stage5-cases then adds extra cases")
    group.addoption("--stage5-cases", default=None,
                    help="backend:mode cases gated, comma-separated (default without --stage5-decision: "
                         "coreml:int4,qnn:int8_int4,xnnpack:int8_int4; with it: none beyond the decisions)")


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from sam3m4.errors import ConfigError
    from sam3m4.export.flows import FLOWS
    from sam3m4.results.runs import check_run_name

    for flow in FLOWS.values():  # backend markers come from the flows (--strict-markers knows them before collection)
        config.addinivalue_line("markers", flow.marker)
    run = config.getoption("--run")
    try:
        check_run_name(run, "--run")
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from None
    run_dir = ROOT / "reports" / run
    if _writes_nothing(config) and getattr(config.option, "htmlpath", None):
        config.option.htmlpath = None  # an explicit --html too: collecting is no run, so no page
    elif not _is_worker(config) and not _writes_nothing(config):
        if hasattr(config.option, "htmlpath") and not config.option.htmlpath:
            config.option.htmlpath = str(run_dir / "acceptance.html")
            config.option.self_contained_html = True
        results = run_dir / "results.jsonl"
        if config.getoption("--fresh-results") and results.exists():
            os.replace(results, results.with_name("results.prev.jsonl"))
    targets_file(config)  # fail now, naming the file and the key, rather than in the first gate


def _writes_nothing(config) -> bool:
    """``--collect-only`` and ``--help`` (and ``--version``, ``--fixtures``, ``--markers``) run no test: nothing is
    written under reports/ (no moved results, no page, no report)."""
    opt = config.option
    return bool(getattr(opt, "collectonly", False) or getattr(opt, "help", False) or getattr(opt, "version", False)
                or getattr(opt, "showfixtures", False) or getattr(opt, "show_fixtures_per_test", False)
                or getattr(opt, "markers", False))


def targets_file(config):
    """The session's :class:`~sam3m4.results.targets.TargetsFile`, loaded once; errors -> ``pytest.UsageError``."""
    loaded = getattr(config, "_sam3m4_targets", None)
    if loaded is None:
        from sam3m4.errors import ConfigError
        from sam3m4.results import load_targets_file

        try:
            loaded = load_targets_file(config.getoption("--targets"))
        except ConfigError as err:
            raise pytest.UsageError(str(err)) from None
        config._sam3m4_targets = loaded
    return loaded


def pytest_metadata(metadata, config):
    """Environment table of the HTML page (pytest-metadata hook): versions, host, git commit, run."""
    from sam3m4.env import metadata as environment

    metadata.update(environment())
    metadata["Run"] = config.getoption("--run")
    tf = targets_file(config)
    metadata["Targets file"] = f"{tf.path} ({tf.origin})"
    metadata["Targets sha256"] = tf.sha256


@pytest.fixture(scope="session")
def run_name(pytestconfig) -> str:
    return pytestconfig.getoption("--run")


@pytest.fixture(scope="session")
def release(pytestconfig) -> bool:
    return bool(pytestconfig.getoption("--release"))


@pytest.fixture(scope="session")
def targets(pytestconfig):
    return targets_file(pytestconfig).targets


@pytest.fixture(scope="session")
def results_store(run_name):
    from sam3m4.results import ResultsStore

    return ResultsStore(run_name, root=ROOT / "reports")


@pytest.fixture
def gate(request, results_store, targets):
    """Record a measurement in the store and the HTML row; with ``target=`` it also judges it.

        rec = gate(stage="stage3", subject="student/phase2", metric="miou_ratio", value=0.95,
                   target="student_miou_ratio", provenance="...")
        assert rec.passed, rec

    The measurement is bound to its target (:func:`sam3m4.results.gating.check_binding`): a metric or unit that
    is not the target's fails the test with one line naming both.
    """
    return make_gate(results_store, targets, request.node, where=str(targets_file(request.config).path))


@pytest.fixture(scope="session")
def gate_factory():
    """:func:`make_gate`, for tests that gate into a store of their own (the planted cases)."""
    return make_gate


def make_gate(store, targets, node=None, where="targets"):
    """The ``gate`` callable over ``store`` and ``targets`` (planted cases use it with a store of their own); a
    binding error or a missing target -> ``pytest.fail``; ``node``: the test whose HTML row shows the record."""
    from sam3m4.errors import ConfigError
    from sam3m4.results.gating import gate_record

    def _gate(*, stage, subject, metric, value, target=None, **fields):
        try:
            rec = gate_record(store, targets, stage=stage, subject=subject, metric=metric, value=value,
                              target=target, where=where, **fields)
        except ConfigError as err:
            pytest.fail(str(err), pytrace=False)
        if node is not None:
            node.user_properties.append(("sam3m4", {
                "measured": f"{rec.subject} {rec.metric} = {_fmt(rec.value)} {rec.unit}".strip(),
                "target": "" if rec.target is None else f"{rec.comparison} {rec.target:g}",
                "provenance": rec.provenance}))
        return rec

    return _gate


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- pytest-html --------------------------------------------------------------------------------
def pytest_html_report_title(report):
    report.title = "sam3m4 release acceptance"


def pytest_html_results_table_header(cells):
    cells.insert(2, "<th>Measured</th>")
    cells.insert(3, "<th>Target</th>")
    cells.insert(4, "<th>Provenance</th>")


def pytest_html_results_table_row(report, cells):
    rows = [v for k, v in getattr(report, "user_properties", []) if k == "sam3m4"]
    join = lambda key: "<br>".join(html.escape(r[key]) for r in rows if r[key])  # noqa: E731
    cells.insert(2, f"<td>{join('measured')}</td>")
    cells.insert(3, f"<td>{join('target')}</td>")
    cells.insert(4, f"<td>{join('provenance')}</td>")


def pytest_html_results_summary(prefix, summary, postfix, session):
    """The top of the page: release verdict, gate matrix (Stage 3-5 x iOS Core ML / Android QNN / host XNNPACK)
    and the plots, from the run's records (sam3m4.report.release); lifted above the environment table."""
    from sam3m4.report.release import release_matrix
    from sam3m4.report.release_page import release_section

    config = session.config
    matrix = release_matrix(config.getoption("--run"), root=ROOT / "reports", targets_file=targets_file(config))
    from sam3m4.results import ResultsStore

    records = ResultsStore(config.getoption("--run"), root=ROOT / "reports").records()
    prefix.append(release_section(matrix, getattr(config, "_sam3m4_plots", []), records))


def pytest_sessionfinish(session, exitstatus):
    """Render reports/<run>/report.md and its plots from the store once, on the controller (before pytest-html
    writes the page: its hook runs last)."""
    config = session.config
    if _is_worker(config) or _writes_nothing(config):
        return
    run = config.getoption("--run")
    store = ROOT / "reports" / run / "results.jsonl"
    if not store.exists():
        return
    from sam3m4.report import render_report
    from sam3m4.report.plots import write_plots

    tf = targets_file(config)
    config._sam3m4_plots = write_plots(run, root=ROOT / "reports", targets=tf.targets)
    out = render_report(run, root=ROOT / "reports", targets_file=tf, plots=config._sam3m4_plots)
    config._sam3m4_report = out


def pytest_terminal_summary(terminalreporter, config):
    out = getattr(config, "_sam3m4_report", None)
    if out is not None:
        terminalreporter.write_line(f"sam3m4 report: {os.path.relpath(out)}")
