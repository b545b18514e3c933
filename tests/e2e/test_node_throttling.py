"""The Node.js client under throttling, against a real server with a low mutation rate:
a burst of creates goes through (throttled calls retried after the server's RetryInfo
delay, each applied once), and with retries off the refusal is a ThrottlingException
with the reason and the delay; a retry never runs past the call's deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import node_marks, run_node
from tests.support.server import ACCOUNT, Harness, rate_limited_harness

RATE = 1.0
BURST = 2

pytestmark = node_marks("@grpc/grpc-js")

SCRIPT = """
const { ServiceControlClient, ThrottlingException } = require('./clients/node/client');
const [target, apiKey] = process.argv.slice(1);
const create = (client, name, options) =>
  client.createConnection({ connectionName: name, providerType: 'GITHUB' }, options);
const describe = (err) => ({
  typed: err instanceof ThrottlingException, name: err.name, codeName: err.codeName,
  reason: err.reason, retryAfterMs: err.retryAfterMs,
});
(async () => {
  const client = new ServiceControlClient(target, { apiKey });
  const burst = [];
  for (let n = 0; n < 6; n += 1) {
    burst.push((await create(client, `burst-${n}`)).connection.connectionName);
  }
  const eager = new ServiceControlClient(target, { apiKey, retryThrottled: false });
  let refused = null;
  let served = 0;
  for (let n = 0; n < 10 && refused === null; n += 1) {
    try {
      await create(eager, `eager-${n}`);
      served += 1;
    } catch (err) {
      refused = describe(err);
    }
  }
  const started = Date.now();
  let late = null;
  try {
    await create(client, 'late', { timeoutMs: 50 });
  } catch (err) {
    late = { ...describe(err), tookMs: Date.now() - started };
  }
  const listed = (await client.listConnections({})).connections.map((c) => c.connectionName);
  console.log(JSON.stringify({ burst, served, refused, late, listed }));
  client.close();
  eager.close();
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.fixture
async def limited(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    async with rate_limited_harness(database_url, s3_server, tmp_path, RATE, BURST) as h:
        yield h


async def test_a_burst_retries_through_and_fails_typed_with_retries_off(limited: Harness) -> None:
    out = await run_node("-e", SCRIPT, f"127.0.0.1:{limited.port}", limited.keys[ACCOUNT].token)
    result = json.loads(out)
    burst = [f"burst-{n}" for n in range(6)]
    assert result["burst"] == burst
    refused = result["refused"]
    assert refused is not None, "a burst beyond the limit was served without retries"
    assert {k: refused[k] for k in ("typed", "name", "codeName", "reason")} == {
        "typed": True,
        "name": "ThrottlingException",
        "codeName": "RESOURCE_EXHAUSTED",
        "reason": "RATE_LIMITED",
    }
    assert 0 < refused["retryAfterMs"] <= 1000 / RATE
    # The server's delay is beyond a 50 ms deadline: refused at once, not retried late.
    late = result["late"]
    assert late is not None and late["typed"] and late["tookMs"] < 500
    # Every create was applied once; the refused ones not at all.
    served = [f"eager-{n}" for n in range(result["served"])]
    assert sorted(result["listed"]) == sorted(burst + served)
