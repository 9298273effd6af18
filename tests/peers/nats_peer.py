"""The other side of EdgeX's NATS message bus, with NATS's own Python client
(nats-py), for tests/nats_bus.rs:

  subscribe URL SUBJECT     core subscription: prints "ready", then one JSON
                            line per message {subject, headers, data}
  stream URL STREAM         every message stored in a JetStream stream,
                            one JSON line each (as above, plus "seq"), read
                            with an ordered consumer; then {"done": n}
  request URL SUBJECT BODY  a request in EdgeX's `nats` format (the envelope's
                            fields as headers); prints the reply as above

URL may list several servers, comma-separated (a cluster).
"""
import asyncio
import json
import sys
import uuid

import nats


def line(msg, **extra):
    out = {"subject": msg.subject, "headers": dict(msg.headers or {}),
           "data": msg.data.decode("utf-8", "replace"), **extra}
    print(json.dumps(out), flush=True)


async def connect(url):
    return await nats.connect(servers=url.split(","), connect_timeout=5,
                              max_reconnect_attempts=-1, reconnect_time_wait=0.2)


async def subscribe(url, subject):
    nc = await connect(url)

    async def on(msg):
        line(msg)

    await nc.subscribe(subject, cb=on)
    await nc.flush()
    print("ready", flush=True)
    while True:
        await asyncio.sleep(3600)


async def stream(url, name):
    nc = await connect(url)
    js = nc.jetstream(timeout=10)
    # A cluster that just lost a server may still be electing leaders.
    for attempt in range(10):
        try:
            info = await js.stream_info(name)
            total = info.state.messages
            sub = None
            if total:
                sub = await js.subscribe(info.config.subjects[0], ordered_consumer=True, stream=name)
            break
        except nats.errors.TimeoutError:
            if attempt == 9:
                raise
            await asyncio.sleep(1)
    seen = 0
    if sub:
        while seen < total:
            msg = await sub.next_msg(timeout=10)
            seen += 1
            line(msg, seq=msg.metadata.sequence.stream)
    print(json.dumps({"done": seen, "messages": total}), flush=True)
    await nc.close()


async def request(url, subject, body):
    nc = await connect(url)
    rid = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "X-Correlation-ID": rid,
               "RequestId": rid, "ApiVersion": "v3", "ErrorCode": "0"}
    # EdgeX answers on {prefix}/response/{service}/{requestId}.
    service = subject.split(".")[1]
    inbox = f"edgex.response.{service}.{rid}"
    sub = await nc.subscribe(inbox)
    await nc.flush()
    await nc.publish(subject, body.encode(), headers=headers)
    msg = await sub.next_msg(timeout=10)
    line(msg, requestId=rid)
    await nc.close()


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "subscribe":
        asyncio.run(subscribe(url, sys.argv[3]))
    elif mode == "stream":
        asyncio.run(stream(url, sys.argv[3]))
    elif mode == "request":
        asyncio.run(request(url, sys.argv[3], sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
