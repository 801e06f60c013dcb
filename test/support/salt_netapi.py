"""Run lowstates through Salt's own NetapiClient (salt/netapi/__init__.py).

What Salt itself answers, for tests that compare ours with it on a real
master (test/real-master-batch.test.ts):

    PYTHONPATH=$SALTENV/src:$SALTENV/pylib /usr/bin/python3 test/support/salt_netapi.py MASTER_CONFIG < lows.json

stdin: one JSON lowstate, or a JSON list of them (run one after the other).
stdout: one JSON list (what Salt prints goes to stderr), per lowstate {"return": ..., "seconds": ...} or
{"error": {"type": ..., "message": ...}, "seconds": ...}. A generator (the
local_batch client's cmd_batch) is read to its end, as rest_cherrypy does.
"""

import json
import sys
import time
import types

import salt.config
import salt.netapi


def run(client, low):
    start = time.monotonic()
    try:
        ret = client.run(low)
        if isinstance(ret, types.GeneratorType):
            ret = list(ret)
        out = {"return": ret}
    except Exception as exc:  # pylint: disable=broad-except
        out = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    out["seconds"] = round(time.monotonic() - start, 2)
    return out


def main():
    out = sys.stdout
    # Salt's clients print to stdout ("No minions matched the target..."): keep it for the JSON.
    sys.stdout = sys.stderr
    opts = salt.config.client_config(sys.argv[1])
    client = salt.netapi.NetapiClient(opts)
    lows = json.load(sys.stdin)
    if isinstance(lows, dict):
        lows = [lows]
    json.dump([run(client, low) for low in lows], out, default=repr)
    out.write("\n")


if __name__ == "__main__":
    main()
