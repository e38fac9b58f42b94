"""Serving a reference app on a socket this process binds itself, for the interop tests.

The socket is bound to 127.0.0.1:0 and listening before the app's URL is printed on
stdout ("listening on http://127.0.0.1:PORT", one line, flushed): a test reads that line
and connects at once (connections wait in the backlog until uvicorn accepts them), with
no port guessed beforehand and no polling until the server answers.
"""

import socket

import uvicorn


def serve(build_app, log_level="warning"):
    """Binds 127.0.0.1:0, builds the app with build_app(base_url), prints the base URL and
    serves the app with uvicorn on that socket until the process is killed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build_app(base)
    print(f"listening on {base}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])
