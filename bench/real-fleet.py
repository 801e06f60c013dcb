"""The fleet of `npm run bench -- --only real-scale` (bench/real-scale.ts), on a real Salt master.

A real master publishes the job to the N accepted keys the bench made
(fleet-00000...), which have no minion behind them. This script, run with
the master's own Salt on PYTHONPATH, plays their minions' part on the master's
event bus: it waits for the job's `salt/job/<jid>/new` event (through
salt.utils.event), then sends one `salt/job/<jid>/ret/<id>` event per minion
into the master's event pull socket, as the master's workers do for each
return they take in: the event made by Salt's SaltEvent.pack, framed by
Salt's frame_msg_ipc (salt/utils/event.py fire_event, salt/transport/tcp.py
_TCPPubServerPublisher.send), at RATE returns a second (a master's workers
take in a few thousand a second; salt.utils.event's fire_event, one
round-trip per event, manages about 1,500). The bus, publish and
targeting are Salt's; only the minions are not.

  python3 real-fleet.py MASTER_CONFIG PREFIX RATE

Writes `ready` once listening, then per job a JSON line
{"jid", "returns", "first_fire", "last_fire"} (epoch seconds); ends on stdin's end.
"""

import datetime
import json
import os
import socket
import sys
import threading
import time

import salt.config
import salt.transport.frame
import salt.utils.event


def returns(sock, jid, fun, ids, rate):
    """The returns of `ids`, paced at `rate` a second: those that are due, sent together."""
    start = time.time()
    sent = 0
    while sent < len(ids):
        due = min(len(ids), int((time.time() - start) * rate) + 1)
        frames = []
        for mid in ids[sent:due]:
            data = {"cmd": "_return", "id": mid, "success": True, "return": True, "retcode": 0, "jid": jid,
                    "fun": fun, "fun_args": [], "_stamp": datetime.datetime.utcnow().isoformat()}
            event = salt.utils.event.SaltEvent.pack("salt/job/{}/ret/{}".format(jid, mid), data)
            frames.append(salt.transport.frame.frame_msg_ipc(event, raw_body=True))
        sock.sendall(b"".join(frames))
        sent = due
        time.sleep(0.001)
    return start, time.time()


def main():
    config, prefix, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
    opts = salt.config.master_config(config)
    bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    pull = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pull.connect(os.path.join(opts["sock_dir"], "master_event_pull.ipc"))
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    while not done.is_set():
        event = bus.get_event(wait=0.2, full=True)
        if not event or not event["tag"].startswith("salt/job/") or not event["tag"].endswith("/new"):
            continue
        data = event["data"]
        ids = [m for m in data.get("minions", []) if m.startswith(prefix)]
        if not ids:
            continue
        first, last = returns(pull, data["jid"], data.get("fun", "test.ping"), ids, rate)
        print(json.dumps({"jid": data["jid"], "returns": len(ids), "first_fire": first, "last_fire": last}), flush=True)


if __name__ == "__main__":
    main()
