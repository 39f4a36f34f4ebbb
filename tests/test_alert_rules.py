"""The shipped alert rules and dashboard: promtool accepts and unit-tests the rules; the
dashboard only queries metrics the gateway really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
# Every metric family the gateway exports (counters and histograms by their sample names).
EXPORTED = {
    "lockgate_requests_total", "lockgate_errors_total", "lockgate_request_duration_seconds_bucket",
    "lockgate_predict_duration_seconds_bucket", "lockgate_rows_predicted_total", "lockgate_batch_size_rows_bucket",
    "lockgate_inflight_requests", "lockgate_deploys_total", "lockgate_load_duration_seconds_bucket",
    "lockgate_fetch_bytes_total", "lockgate_reused_bytes_total", "lockgate_endpoint_info", "lockgate_feature_skew_psi",
    "lockgate_feature_skew_js_distance", "lockgate_feature_out_of_range_ratio", "lockgate_feature_missing_ratio",
    "lockgate_feature_unseen_category_ratio", "lockgate_skew_window_rows", "lockgate_skew_max_psi",
    "lockgate_prediction_skew_psi", "lockgate_prediction_skew_js_distance", "lockgate_cache_used_bytes",
    "lockgate_cache_limit_bytes", "lockgate_cache_versions", "lockgate_shadow_requests_total",
    "lockgate_shadow_dropped_total", "lockgate_shadow_compared_rows_total", "lockgate_shadow_disagreeing_rows_total",
    "lockgate_shadow_disagreement_ratio", "lockgate_shadow_relative_difference_bucket", "lockgate_shadow_queue_depth",
    "lockgate_live_score", "lockgate_live_score_rows", "lockgate_baseline_score", "lockgate_feedback_labels_total",
    "lockgate_inference_log_rows_total", "lockgate_inference_log_commit_lag_seconds",
    "lockgate_inference_log_pending_rows", "lockgate_inference_log_commits_total",
}  # fmt: skip


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=MONITORING, timeout=120, check=False)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", "alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_skew_alert_fires_on_shifted_data_and_not_under_1000_rows() -> None:
    result = promtool("test", "rules", "alerts_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests are real: with the row floor removed, the silent case alerts and fails."""
    loose = (MONITORING / "alerts.yaml").read_text().replace(">= 1000", ">= 0")
    (tmp_path / "alerts.yaml").write_text(loose)
    (tmp_path / "alerts_test.yaml").write_text((MONITORING / "alerts_test.yaml").read_text())
    binary = shutil.which("promtool")
    assert binary
    result = subprocess.run(
        [binary, "test", "rules", "alerts_test.yaml"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode != 0


def test_alerts_and_dashboard_query_only_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "dashboards" / "lockgate.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs.append((MONITORING / "alerts.yaml").read_text())
    used = {m for e in exprs for m in re.findall(r"lockgate_[a-z0-9_]+", e)}
    assert used, "the dashboard queries something"
    assert used <= EXPORTED, f"unknown metrics: {sorted(used - EXPORTED)}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("endpoints", "latency", "error", "psi", "deploys", "role", "shadow disagreement", "live score",
                  "inference log"):  # fmt: skip
        assert topic in titles
