"""The demo's real client: downloads the lab peer's blob over and over, one new TCP connection
per request (so the agent sees handshakes, transfers and closes), with a short pause between.
Runs until killed; each request has a timeout so a blackholed link never hangs it."""
import sys
import time
import urllib.request

url = sys.argv[1]
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
    except Exception as e:  # loss or a blackhole: keep going, the agent records it
        print(f"request failed: {e}", file=sys.stderr, flush=True)
    time.sleep(0.5)
