"""The commands that drive a running gateway over its admin API: ``deploy`` (with a traffic
policy), ``promote``, ``abort``, ``endpoints``, ``undeploy``, ``rollback`` and ``lineage``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lockgate.gateway.cli.console import err, human_bytes, out, print_json, short_id
from lockgate.gateway.cli.serve_commands import (
    DEFAULT_GATEWAY,
    BatchingOption,
    BatchRowsOption,
    BatchWaitOption,
    GatewayOption,
    JsonOption,
    LogSampleOption,
    LogWindowOption,
    OnnxOption,
    PrecisionOption,
    SpinningOption,
    TargetOption,
    precision_value,
)

if TYPE_CHECKING:
    import httpx

NameArgument = Annotated[str, typer.Argument(help="The endpoint's name.", show_default=False)]


def _client(gateway: str) -> httpx.Client:
    # Imported here: `lockgate serve` loads this module too, and httpx is 45 ms of its start.
    import httpx

    token = os.environ.get("LOCKGATE_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=gateway, headers=headers, timeout=600)


def _call(gateway: str, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        with _client(gateway) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        err.print(f"[bold red]error:[/] cannot reach the gateway at {gateway}: {exc}", highlight=False)
        raise typer.Exit(1) from exc
    data = response.json() if response.headers.get("content-type", "").startswith("application/json") else response.text
    if response.status_code >= 400:
        message = data.get("message") if isinstance(data, dict) else data
        err.print(f"[bold red]error ({response.status_code}):[/] {message}", highlight=False)
        raise typer.Exit(1)
    return data


def _policy_body(
    canary: str | None, canary_percent: float | None, shadow: str | None, no_shadow: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if canary is not None and canary_percent is None:
        raise typer.BadParameter("--canary needs --canary-percent (0-100): the share of traffic it takes")
    if canary_percent is not None:
        body["canary"] = {"model_uri": canary, "percent": canary_percent} if canary else {"percent": canary_percent}
    if shadow is not None and no_shadow:
        raise typer.BadParameter("--shadow and --no-shadow contradict each other")
    if shadow is not None:
        body["shadow"] = {"model_uri": shadow}
    elif no_shadow:
        body["shadow"] = None
    return body


def deploy(
    target: Annotated[
        str,
        typer.Argument(
            help="models:/NAME/Production, models:/NAME@ALIAS, ... or the NAME of a deployed endpoint, to change "
            "only its traffic policy.",
            show_default=False,
        ),
    ],
    name: Annotated[str | None, typer.Option("--name", help="Endpoint name (default: the model's name).")] = None,
    canary: Annotated[
        str | None,
        typer.Option("--canary", help="A canary reference, e.g. models:/fraud@challenger.", show_default=False),
    ] = None,
    canary_percent: Annotated[
        float | None,
        typer.Option(
            "--canary-percent",
            min=0,
            max=100,
            help="The canary's share of the traffic (decimals allowed). 0 drops the canary and the shadow.",
            show_default=False,
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option("--shadow", help="A shadow reference: gets a copy of every primary request.", show_default=False),
    ] = None,
    no_shadow: Annotated[bool, typer.Option("--no-shadow", help="Drop the shadow.")] = False,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Pin this version; do not follow the reference.")
    ] = False,
    onnx: OnnxOption = None,
    batching: BatchingOption = None,
    max_batch_rows: BatchRowsOption = None,
    max_batch_wait_ms: BatchWaitOption = None,
    onnx_spinning: SpinningOption = None,
    precision: PrecisionOption = None,
    inference_log_sample: LogSampleOption = None,
    inference_log_window: LogWindowOption = None,
    target_column: TargetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy (or redeploy) a model to a running gateway: resolve, fetch, warm up, swap in.

    Prints the version, its weights and dataset commits, and the bytes fetched.

    Traffic policies: a canary takes a share of the requests (the header X-Lockgate-Route-Key
    keeps one key on one version); a shadow gets a copy of each, off the request path.

      lockgate deploy models:/fraud@champion --name fraud --canary models:/fraud@challenger --canary-percent 10
      lockgate deploy fraud --canary-percent 25     (re-weigh the live canary)
      lockgate deploy fraud --shadow models:/fraud@challenger
      lockgate promote fraud  |  lockgate abort fraud
    """
    policy = _policy_body(canary, canary_percent, shadow, no_shadow)
    is_uri = ":" in target
    if not is_uri and not policy:
        raise typer.BadParameter(
            f"{target!r} is not a model URI (models:/NAME@ALIAS, ...); an endpoint name takes a policy change "
            "(--canary-percent, --shadow, --no-shadow)"
        )
    body = {
        "model_uri": target if is_uri else None,
        "name": name if is_uri else target,
        "follow": False if no_follow else None,
        "onnx": onnx,
        "batching": batching,
        "max_batch_rows": max_batch_rows,
        "max_batch_wait_ms": max_batch_wait_ms,
        "onnx_spinning": onnx_spinning,
        "precision": precision_value(precision),
        "inference_log_sample": inference_log_sample,
        "inference_log_window": inference_log_window,
        "target_column": target_column,
        **policy,
    }
    data = _call(gateway, "POST", "/admin/endpoints", json=body)
    if as_json:
        print_json(data)
        return
    report = data.get("load_report") or {}
    out.print(
        f"[bold green]deployed[/] {data['name']}: {data['model_name'] or '-'} "
        f"version {data['version'] or '-'} ({data['serving_path']})"
    )
    serving = data.get("serving") or {}
    if serving.get("reason"):
        out.print(f"  serving path    {serving['name']}: {serving['reason']}")
    out.print(f"  weights commit  {data['weights_commit'] or '-'}")
    out.print(f"  dataset commit  {data['dataset_commit'] or '- (no dataset lineage)'}")
    out.print(f"  follows         {data['model_uri']} ({'following' if data['follow'] else 'pinned'})")
    if report:
        out.print(
            f"  fetched         {human_bytes(report['bytes_fetched'])} of {human_bytes(report['bytes_total'])}"
            f" ({human_bytes(report['bytes_reused'])} reused) in {report['total_seconds']:.2f}s"
        )
    _print_policy(data.get("policy") or {})


def _print_policy(policy: dict[str, Any]) -> None:
    for role in ("canary", "shadow"):
        slot = policy.get(role)
        if not slot:
            continue
        share = f"{slot['percent']:g} % of requests" if role == "canary" else "a copy of every primary request"
        state = "" if slot["status"] == "ready" else f" [yellow]{slot['status']}: {slot.get('last_error') or ''}[/]"
        out.print(
            f"  {role:<15} {slot['model_uri']} version {slot['version'] or '-'} "
            f"(weights {short_id(slot['weights_commit'])}), {share}{state}"
        )


def promote(name: NameArgument, gateway: GatewayOption = DEFAULT_GATEWAY, as_json: JsonOption = False) -> None:
    """Make the endpoint's canary its primary: zero bytes fetched (the canary is loaded already).

    The old primary becomes the rollback target. The primary keeps following its own reference
    (e.g. @champion) but holds the promoted version until that reference moves: move the alias
    in the registry to make the promote permanent.
    """
    data = _call(gateway, "POST", f"/admin/endpoints/{name}/promote", json={})
    if as_json:
        print_json(data)
        return
    out.print(
        f"[bold green]promoted[/] {name}: version {data['version']} ({short_id(data['weights_commit'])}) is the "
        f"primary, {human_bytes(data['bytes_fetched'])} fetched; rollback target: version "
        f"{data['rollback_version'] or '-'}"
    )


def abort(name: NameArgument, gateway: GatewayOption = DEFAULT_GATEWAY) -> None:
    """Drop the endpoint's canary and shadow: the primary takes all the traffic again."""
    data = _call(gateway, "POST", f"/admin/endpoints/{name}/abort", json={})
    out.print(f"aborted the canary and shadow of {name}: version {data['version']} takes all the traffic")


def endpoints(gateway: GatewayOption = DEFAULT_GATEWAY, as_json: JsonOption = False) -> None:
    """List a gateway's endpoints: one line per role (primary, canary, shadow), with its
    version, share of the traffic, commits and reference."""
    data = _call(gateway, "GET", "/endpoints")
    if as_json:
        print_json(data)
        return
    table = Table("endpoint", "role", "status", "version", "share", "weights commit", "dataset commit", "follows")
    for e in data["endpoints"]:
        policy = e.get("policy") or {}
        for role in ("primary", "canary", "shadow"):
            slot = policy.get(role)
            if not slot:
                continue
            share = "copy" if role == "shadow" else f"{slot['percent']:g} %"
            follows = slot["model_uri"] + ("" if slot["follow"] else " (pinned)")
            commits = [short_id(slot["weights_commit"]), short_id(slot["dataset_commit"])]
            table.add_row(e["name"], role, slot["status"], str(slot["version"] or "-"), share, *commits, follows)
    out.print(table)


def undeploy(name: NameArgument, gateway: GatewayOption = DEFAULT_GATEWAY) -> None:
    """Remove an endpoint, with its canary and shadow (their in-flight requests finish first)."""
    _call(gateway, "DELETE", f"/admin/endpoints/{name}")
    out.print(f"undeployed {name}")


def rollback(name: NameArgument, gateway: GatewayOption = DEFAULT_GATEWAY) -> None:
    """Return an endpoint to the version it served before (from cache: zero bytes fetched).
    The endpoint stops following its reference until it is redeployed."""
    data = _call(gateway, "POST", f"/admin/endpoints/{name}/rollback", json={})
    out.print(f"[bold green]rolled back[/] {name} to version {data['version']} ({data['weights_commit']})")


def lineage(
    name: NameArgument,
    at: Annotated[str | None, typer.Option("--at", help="TIME: ISO 8601, unix seconds or '15m ago'.")] = None,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    as_json: JsonOption = False,
) -> None:
    """Which versions, weights commits and dataset commits served NAME at a time, with each
    role's share of the traffic (from the ledger). Without --at: every ledger event, then per
    version the inference-log commits of the data it served (when the endpoint is logged)."""
    data = _call(gateway, "GET", f"/endpoints/{name}/lineage", params={"at": at} if at else None)
    if as_json:
        print_json(data)
        return
    if at:
        policy = data.get("policy") or {}
        if not policy.get("primary"):
            out.print(f"nothing served {name} at {data['at']}")
            return
        out.print(f"{name} at {data['at']}:")
        for role in ("primary", "canary", "shadow"):
            event = policy.get(role)
            if not event:
                continue
            to = event["to"]
            share = "copy of every request" if role == "shadow" else f"{event['share']:g} % of requests"
            out.print(
                f"  {role:<8} version {to['version']}  {share}  weights {to['weights_commit']}  "
                f"dataset {to['dataset_commit']}",
                highlight=False,
            )
            out.print(f"           since {event['time']} ({event['action']} by {event['actor']})", highlight=False)
        return
    for event in data["events"]:
        to = event.get("to") or {}
        role = event.get("role", "primary")
        share = f" {event['percent']:g}%" if event.get("percent") is not None else ""
        out.print(
            f"{event['time']}  {role:<7} {event['action']:<9} version {to.get('version') or '-':<4} "
            f"weights {short_id(to.get('weights_commit'))}  dataset {short_id(to.get('dataset_commit'))}{share}  "
            f"{event.get('actor', '')}  {event.get('error') or ''}".rstrip(),
            highlight=False,
        )
    served = data.get("served_data") or {}
    if served:
        out.print("served data (the inference log: lockgate://inference@" + name + "/...):")
    for version, entry in served.items():
        out.print(
            f"  version {version:<4} {len(entry['commits'])} commit(s), up to {entry['rows']:,} rows, "
            f"{entry['first']} to {entry['last']}, latest {short_id(entry['commits'][-1])}",
            highlight=False,
        )
