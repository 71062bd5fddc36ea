"""``http.check``: the smoke check that decides whether a change stays or is rolled back.

Requests run from the controller (where ``maint`` runs) against the environment's public URL::

    - action: http.check
      with:
        paths: [/, /cart/]                 # relative to env.url, or absolute URLs
        status: 200                        # or a list: [200, 301]
        must_not_match: "Fatal error|Warning:"
        max_latency_ms: 1500

and flows: requests sharing one cookie session, with values captured from earlier
responses and used later as ``{name}`` (a plain placeholder, not a template: templates are
rendered before the run, captures exist only while it runs)::

        flow:
          - {path: /product/, capture: {nonce: 'name="nonce" value="([^"]+)"'}}
          - {path: /cart/add, method: POST, data: {product: "42", nonce: "{nonce}"}}
          - {path: /cart/, must_match: "Blue Mug"}

This is a verification action: check() returns "ok" when every expectation holds and raises
:class:`~maintkit.errors.CheckFailed` naming each failing URL and why (status, pattern,
latency) otherwise, so a failing smoke check fails the step and the stage is rolled back.
It never changes anything. In plan mode a flow that sends anything but GET/HEAD is not
run (its POSTs would touch the shop): the step reports "unknown" instead.

Every request (every attempt) is written to the audit log as an ``http.request`` event and
in the step's data (``requests``: url, method, status, latency_ms, ok), with a latency summary.

Modules: ``params`` (the parameters), ``outcome`` (expectations, outcomes, placeholders),
``client`` (sessions and the measured request), ``flow`` (paths and flows with retries),
``check`` (the action).
"""

from maintkit.actions.http.check import HttpCheck
from maintkit.actions.http.flow import run_flow_once, run_paths
from maintkit.actions.http.outcome import Expect, FlowError, Outcome, evaluate, join_url, latency_summary, substitute
from maintkit.actions.http.params import FlowRequest, HttpCheckParams

__all__ = [
    "Expect",
    "FlowError",
    "FlowRequest",
    "HttpCheck",
    "HttpCheckParams",
    "Outcome",
    "evaluate",
    "join_url",
    "latency_summary",
    "run_flow_once",
    "run_paths",
    "substitute",
]
