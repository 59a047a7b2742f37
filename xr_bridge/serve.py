"""``voice-tutor serve``: the bridge server with the voice tutor in every room.

Loads the speech models once, starts :class:`~xr_bridge.server.BridgeServer`
on one port (the page from ``assets/web`` over HTTP, the protocol at
``/ws``) with a :class:`~xr_bridge.voice.VoiceRoom` per room, and prints the
page's address with ready-made join tokens for a learner, a teacher and an
observer.  ``python -m xr_bridge.serve`` runs the same command on its own.

Classroom additions on the same port (JSON over HTTP ``GET``; secrets travel in
``Authorization: Bearer …`` headers, never in URLs the server sees):

* ``--kiosk``: the page at ``/?kiosk=KEY`` (the printed kiosk link) shows a
  sign-in screen; ``/api/kiosk/signin?name=Ada`` ends whatever session the
  kiosk's room holds and returns a learner token for it;
  ``/api/kiosk/signout`` ends it.  ``--idle-timeout`` ends a silent session,
  and the learner database (``--db``) is on by default, so progress survives.
* The teacher dashboard ``/dashboard.html`` logs in with ``--teacher-password``
  (printed in the link's ``#key=`` fragment when generated):
  ``/api/teacher/rooms`` lists the live rooms with a teacher token for each,
  ``/api/teacher/end?room=R`` ends the learner's session in room R.
* The admin page ``/admin.html`` logs in with ``--admin-password`` (printed
  in its link's ``#key=`` fragment when generated; see :class:`Admin`):
  learners and classes of the learner database, a learner's export, deleting
  a learner, the retention purge.  The admin password also works wherever the
  teacher password does; the teacher password never works for the admin.
* The read-only progress API (:mod:`voice_tutor.classroom.progress_api`) at
  ``/api/v1/...``, for the ``[progress_api] tokens`` of the configuration and
  the admin password (which sees every class).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import time
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

from voice_tutor.config import ASSETS_DIR, Config, load_config, with_overrides

log = logging.getLogger(__name__)
WEB_DIR = ASSETS_DIR / "web"
TEACHER_PASSWORD_ENV = "VOICE_TUTOR_TEACHER_PASSWORD"
ADMIN_PASSWORD_ENV = "VOICE_TUTOR_ADMIN_PASSWORD"
KIOSK_NAME = re.compile(r"^[\w][\w .'-]{0,39}$")
"""What a learner may type at the kiosk: a short code or a first name."""
THREE_MODULE = Path("node_modules/three/build/three.module.js")


def _progress(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The model options every ``voice-tutor`` command takes (for running this module on its own)."""
    parser.add_argument("--config", type=Path, help="a TOML configuration file")
    parser.add_argument("--stt-model", help="faster-whisper model: bundled:whisper-base, a directory, or a size")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where Whisper runs (default auto)")
    parser.add_argument("--language", help="spoken language code (default en)")
    parser.add_argument("--voice", help="piper voice: bundled:joe or a path to an .onnx voice")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def add_serve_command(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``voice-tutor`` subcommands; ``parents`` carries the common model options."""
    serve = subparsers.add_parser(
        "serve", parents=list(parents), help="the lesson for browsers and headsets (kiosk, WebXR) over websockets",
        description="Serve the kiosk/WebXR page and the XR bridge; every room gets a voice tutoring session.",
    )  # fmt: skip
    if not parents:
        add_common_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8765, help="port for the page and the websocket (default 8765)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: https/wss (headsets need it off localhost)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (if not in the same file)")
    serve.add_argument("--secret", help="signs join tokens, at least 16 characters (default: random for this run)")
    serve.add_argument("--room", default="demo", help="the room of the printed links (default demo)")
    serve.add_argument("--learner", default="Learner", help="the learner name in the printed learner link")
    serve.add_argument("--token-hours", type=float, default=12.0, help="how long the printed links work (default 12)")
    serve.add_argument("--lesson", help="lesson id or path (default arithmetic)")
    serve.add_argument("--llm-url", help="an OpenAI-compatible endpoint (default: the offline tutor)")
    serve.add_argument("--llm-model", help="the model to ask at --llm-url")
    serve.add_argument("--db", type=Path, help="remember each room's first learner in this learner database "
                                                    "(default: the configuration's [dialogue] store; none)")
    serve.add_argument("--kiosk", action="store_true",
                       help="classroom kiosk: learners sign in on the page, one at a time, in --room")
    serve.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                       help="end a learner's session after this long without activity "
                            "(default 120 with --kiosk, never otherwise; 0: never)")
    serve.add_argument("--teacher-password",
                       help="the teacher dashboard's password, at least 8 characters "
                            f"(default ${TEACHER_PASSWORD_ENV}, else random and printed in the dashboard link)")
    serve.add_argument("--admin-password",
                       help="the admin page's password (learners, classes, exports, deletion), at least 8 "
                            f"characters (default ${ADMIN_PASSWORD_ENV}, else random and printed in the admin link)")
    serve.add_argument("--static-dir", type=Path, default=WEB_DIR, help=argparse.SUPPRESS)
    serve.set_defaults(run=run_serve)
    return serve


def _config(args: argparse.Namespace) -> Config:
    return with_overrides(
        load_config(args.config),
        stt={"model": args.stt_model, "device": args.device, "language": args.language},
        tts={"voice": args.voice},
        llm={"base_url": args.llm_url, "model": args.llm_model},
        dialogue={"lesson": args.lesson, "store": args.db},
    )


def _fail(message: str) -> int:
    print(f"voice-tutor: error: {message}", file=sys.stderr)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    """Run until interrupted (Ctrl+C or SIGTERM); expected errors are left to the CLI's one-line handler."""
    secret = (args.secret or secrets.token_urlsafe(32)).encode()
    if len(secret) < 16:
        return _fail("--secret must be at least 16 characters")
    if args.tls_key and not args.tls_cert:
        return _fail("--tls-key needs --tls-cert")
    if not 0 < args.token_hours <= 24 * 365:
        return _fail("--token-hours must be above 0 and at most a year")
    if args.idle_timeout is not None and args.idle_timeout < 0:
        return _fail("--idle-timeout must be 0 (never) or more seconds")
    for role, env in (("teacher", TEACHER_PASSWORD_ENV), ("admin", ADMIN_PASSWORD_ENV)):
        given = getattr(args, f"{role}_password", None) or os.environ.get(env) or None
        setattr(args, f"{role}_password_printed", given is None)
        if given is not None and len(given) < 8:
            return _fail(f"--{role}-password must be at least 8 characters")
        setattr(args, f"{role}_password", given or secrets.token_urlsafe(12))
    if hmac.compare_digest(args.teacher_password.encode(), args.admin_password.encode()):
        return _fail("--admin-password must differ from --teacher-password (a teacher is not an admin)")
    if args.kiosk and args.db is None:
        from voice_tutor.store.sqlite import default_path

        args.db = default_path()  # a kiosk remembers its learners' progress
    try:
        return asyncio.run(_serve(args, _config(args), secret))
    except KeyboardInterrupt:
        return 130


async def _serve(args: argparse.Namespace, config: Config, secret: bytes) -> int:
    from voice_tutor.session import SpeechModels
    from voice_tutor.tutoring import load_configured_lesson

    from .server import BridgeServer, load_ssl_context
    from .voice import voice_session_factory

    lesson = load_configured_lesson(config)  # a bad lesson or a dead endpoint fails here, not in the first room
    if config.llm.base_url:
        from voice_tutor.dialogue.llm import check_endpoint

        await check_endpoint(config.llm)
    tls = None
    if args.tls_cert:
        try:
            tls = load_ssl_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as error:
            return _fail(f"cannot use the TLS certificate {args.tls_cert}: {error}")
    if args.port:  # fail before the models load, not after
        try:
            socket.create_server((args.host, args.port)).close()
        except OSError as error:
            return _fail(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
    static_dir = Path(args.static_dir)
    if not (static_dir / "index.html").is_file():
        return _fail(f"the page is missing: {static_dir / 'index.html'}")
    if not (static_dir / THREE_MODULE).is_file():
        _progress(f"three.js is missing, the page will show no 3D scene: run `npm ci --prefix {static_dir}`")

    models = await asyncio.to_thread(SpeechModels.load, config, _progress)
    store = None
    try:
        database = config.dialogue.store  # --db, else the configuration file's [dialogue] store
        if database:
            from voice_tutor.store import Store

            store = await asyncio.to_thread(Store.open, database)
        idle = args.idle_timeout if args.idle_timeout is not None else (120.0 if args.kiosk else 0.0)
        classroom = Classroom(secret, args.room, args.teacher_password, kiosk=args.kiosk,
                              ttl_s=args.token_hours * 3600, admin_password=args.admin_password)
        admin = Admin(classroom, args.admin_password, store, progress_tokens=config.progress_api.tokens,
                      retention_days=config.privacy.retention_days)
        server = BridgeServer(
            secret, host=args.host, port=args.port, static_dir=static_dir, ssl=tls,
            session_factory=voice_session_factory(models, config, store=store, idle_timeout_s=idle or None),
            routes=classroom.routes() | admin.routes(),
        )  # fmt: skip
        classroom.server = server
        try:
            await server.start()
        except OSError as error:
            return _fail(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
        statements = _send_statements(store, config)
        try:
            _announce(server, args, lesson.title, lesson.id, classroom)
            await _until_stopped()
        finally:
            _progress("stopping…")
            if statements:
                statements.cancel()
            await server.close()
    finally:
        models.close()
        if store is not None:
            store.close()
    return 0


def _send_statements(store, config: Config) -> asyncio.Task | None:
    """Deliver queued xAPI statements to the configured Learning Record Store while serving."""
    if store is None or not config.xapi.endpoint:
        return None
    from voice_tutor.classroom.xapi import XapiSender

    return asyncio.create_task(XapiSender(store, config.xapi).run(), name="xapi-sender")


def page_url(base: str, room: str, role: str, name: str, token: str) -> str:
    return f"{base}?{urlencode({'room': room, 'role': role, 'name': name, 'token': token})}"


def _announce(server, args: argparse.Namespace, title: str, lesson_id: str, classroom: Classroom) -> None:
    host = args.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    scheme = "https" if server.url.startswith("wss") else "http"
    bracketed = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{bracketed}:{server.port}/"
    ttl = args.token_hours * 3600
    links = [
        (role, page_url(base, args.room, role, name, server.make_token(args.room, role, name, ttl_s=ttl)))
        for role, name in (("learner", args.learner), ("teacher", "Teacher"), ("observer", "Observer"))
    ]
    print(f"voice-tutor serve: {title} ({lesson_id}), room {args.room!r}, on {base}", flush=True)
    if args.kiosk:
        print(f"  {'kiosk:':<11}{base}?{urlencode({'kiosk': classroom.kiosk_key})}", flush=True)
    key = f"#{urlencode({'key': args.teacher_password})}" if args.teacher_password_printed else ""
    print(f"  {'dashboard:':<11}{base}dashboard.html{key}", flush=True)
    key = f"#{urlencode({'key': args.admin_password})}" if args.admin_password_printed else ""
    print(f"  {'admin:':<11}{base}admin.html{key}", flush=True)
    for role, url in links:
        print(f"  {role + ':':<11}{url}", flush=True)
    print(f"  (links work for {args.token_hours:g} h; Ctrl+C stops the server)", flush=True)


def _bearer(request) -> str:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


REFUSAL_DELAY_S = 0.5
"""A wrong kiosk key, teacher or admin password or API token is answered this much later (guessing gets slow)."""


async def _refused(message: str) -> tuple[int, object]:
    await asyncio.sleep(REFUSAL_DELAY_S)
    return 401, {"error": message}


class Classroom:
    """The kiosk's sign-in and the teacher dashboard's room list: HTTP routes of the bridge.

    ``kiosk_key`` (derived from the token secret, so stable across restarts)
    lets the kiosk page sign learners in to ``room``; ``teacher_password``
    lets the dashboard list rooms and get a teacher token for each, and so
    does ``admin_password`` (an admin may do what a teacher may).
    """

    def __init__(self, secret: bytes, room: str, teacher_password: str, *, kiosk: bool, ttl_s: float,
                 admin_password: str | None = None):  # fmt: skip
        self.room = room
        self.kiosk = kiosk
        self.teacher_password = teacher_password
        self.admin_password = admin_password
        self.ttl_s = ttl_s
        digest = hmac.new(secret, b"voice-tutor kiosk key", hashlib.sha256).digest()
        self.kiosk_key = base64.urlsafe_b64encode(digest[:18]).decode()
        self.server = None
        self.started_at = time.time()

    def routes(self) -> dict:
        routes = {"/api/teacher/rooms": self.rooms, "/api/teacher/end": self.end}
        if self.kiosk:
            routes |= {"/api/kiosk/signin": self.sign_in, "/api/kiosk/signout": self.sign_out}
        return routes

    def is_teacher(self, request) -> bool:
        """The teacher's or the admin's password is in the request's Authorization header."""
        given = _bearer(request)
        teacher = _same(given, self.teacher_password)
        admin = self.admin_password is not None and _same(given, self.admin_password)
        return teacher or admin

    def live_learners(self) -> dict[str, str]:
        """The learners connected now, and the room each is in."""
        rooms = self.server.rooms if self.server is not None else {}
        return {m.name: room_id for room_id, room in rooms.items() for m in room.members if m.role == "learner"}

    async def sign_in(self, request, query: dict[str, str]) -> tuple[int, object]:
        if not _same(_bearer(request), self.kiosk_key):
            return await _refused("this page is not a kiosk of this server")
        name = " ".join(query.get("name", "").split())
        if not KIOSK_NAME.match(name):
            return 400, {"error": "type your code or first name (letters and digits, up to 40)"}
        room = self.server.rooms.get(self.room)
        if room is not None and (any(m.role == "learner" for m in room.members) or _has_session(room)):
            await room.end_conversation("a new learner signed in")
        token = self.server.make_token(self.room, "learner", name, ttl_s=self.ttl_s)
        return 200, {"room": self.room, "role": "learner", "name": name, "token": token}

    async def sign_out(self, request, query: dict[str, str]) -> tuple[int, object]:
        if not _same(_bearer(request), self.kiosk_key):
            return await _refused("this page is not a kiosk of this server")
        room = self.server.rooms.get(self.room)
        if room is not None:
            await room.end_conversation("signed out")
        return 200, {"ended": room is not None}

    async def rooms(self, request, query: dict[str, str]) -> tuple[int, object]:
        if not self.is_teacher(request):
            return await _refused("wrong teacher password")
        listed = []
        for room_id, room in sorted(self.server.rooms.items()):
            members = [m.model_dump() for m in room.members]
            listed.append({
                "room": room_id,
                "kiosk": self.kiosk and room_id == self.room,
                "members": members,
                "learners": [m["name"] for m in members if m["role"] == "learner"],
                "alerts": [a.model_dump(exclude_none=True) for a in room.alerts],
                "sessions_ended": room.sessions_ended,
                "token": self.server.make_token(room_id, "teacher", "Teacher", ttl_s=self.ttl_s),
            })  # fmt: skip
        return 200, {"rooms": listed}


    async def end(self, request, query: dict[str, str]) -> tuple[int, object]:
        """End the learner's session in ``?room=``: the room stays, the next learner starts afresh."""
        if not self.is_teacher(request):
            return await _refused("wrong teacher password")
        room = self.server.rooms.get(query.get("room", ""))
        if room is None:
            return 404, {"error": "no such room"}
        await room.end_conversation("ended by the teacher")
        return 200, {"ended": room.id}


class Admin:
    """The admin's routes (``/api/admin/...``) and the progress API (``/api/v1/...``).

    Every admin route needs ``Authorization: Bearer <admin password>``: the
    teacher's password is refused, a wrong one answered after
    :data:`REFUSAL_DELAY_S`.  They are all ``GET`` (the only method the
    bridge's HTTP routes answer; others get 405), yet none can be set off by
    a plain link, a form or another site's page: a link cannot carry a bearer
    header (this server never asks for Basic credentials a browser would
    remember), and another origin's ``fetch`` with one needs a CORS preflight
    this server never grants.  The two that destroy data also want
    ``confirm``: ``/api/admin/delete?learner=NAME&confirm=NAME`` (the name
    again) and ``/api/admin/purge?days=N&confirm=purge``, so a request that
    merely names its target deletes nothing.  A learner connected to a room
    is not deleted (409: end the session first).  ``store`` None (serve
    without ``--db``): every route that needs the learner database answers 503.

    ::

        GET /api/admin/learners                               learners: level, sessions, last seen, classes, live
        GET /api/admin/export?learner=NAME                    everything the store holds about NAME (JSON)
        GET /api/admin/delete?learner=NAME&confirm=NAME       delete NAME and every row about them
        GET /api/admin/classes                                classes: teacher, learners
        GET /api/admin/class/create?class=C[&teacher=T]       a new class (or set its teacher)
        GET /api/admin/class/add?class=C&learner=NAME         put NAME in C (a new name is created)
        GET /api/admin/class/remove?class=C&learner=NAME      take NAME out of C
        GET /api/admin/purge?[days=N&]confirm=purge           delete transcripts older than N days
                                                              (default [privacy] retention_days)
    """

    def __init__(self, classroom: Classroom, password: str, store, *,
                 progress_tokens: dict[str, list[str]] | None = None, retention_days: int | None = None):  # fmt: skip
        from voice_tutor.classroom.progress_api import ProgressApi, scopes_from_config

        self.classroom = classroom
        self.password = password
        self.store = store
        self.retention_days = retention_days
        self.progress = ProgressApi(store, {**scopes_from_config(progress_tokens or {}), password: "*"})

    def routes(self) -> dict:
        admin = {
            "learners": self.learners, "export": self.export, "delete": self.delete,
            "classes": self.classes, "class/create": self.class_create,
            "class/add": self.class_add, "class/remove": self.class_remove, "purge": self.purge,
        }  # fmt: skip
        return {"/api/v1": self.progress_api, "/api/v1/": self.progress_api} | {
            f"/api/admin/{path}": self._guarded(handler) for path, handler in admin.items()
        }

    async def progress_api(self, request, query: dict[str, str]) -> tuple[int, object]:
        """The read-only progress API: its tokens, and the admin password for every class."""
        status, body = await asyncio.to_thread(self.progress.handle, request.path, request.headers.get("Authorization"))
        if status == 401:
            await asyncio.sleep(REFUSAL_DELAY_S)
        return status, body

    def _guarded(self, handler):
        """``handler(query, live)``, run in a thread, for the admin password only; store errors as 4xx.

        ``live`` (:meth:`Classroom.live_learners`) is read here, on the event loop that changes the rooms.
        """
        from voice_tutor.classroom.progress_api import NO_STORE
        from voice_tutor.store import NotFound, StoreError

        async def route(request, query: dict[str, str]) -> tuple[int, object]:
            if not _same(_bearer(request), self.password):
                return await _refused("wrong admin password")
            if self.store is None:
                return 503, {"error": NO_STORE}
            try:
                return await asyncio.to_thread(handler, query, self.classroom.live_learners())
            except NotFound as error:
                return 404, {"error": str(error)}
            except ValueError as error:
                return 400, {"error": str(error)}
            except StoreError as error:  # e.g. recordings that could not be deleted: nothing else was
                log.warning("admin %s failed: %s", request.path.split("?")[0], error)
                return 500, {"error": str(error)}

        return route

    @staticmethod
    def _name(query: dict[str, str], key: str) -> str:
        name = query.get(key, "").strip()
        if not name:
            raise ValueError(f"give ?{key}=")
        return name

    def learners(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        learners = self.store.list_learners()
        activity = self.store.learner_activity()
        classes: dict[str, list[str]] = {}
        for room in self.store.list_classes():
            for name in room.members:
                classes.setdefault(name, []).append(room.name)
        listed = []
        for learner in learners:
            sessions, last_seen = activity.get(learner.name, (0, None))
            listed.append({
                "name": learner.name, "level": learner.level, "sessions": sessions,
                "last_seen": last_seen.isoformat() if last_seen else None,
                "created_at": learner.created_at.isoformat(),
                "classes": classes.get(learner.name, []), "live_in": live.get(learner.name),
            })  # fmt: skip
        return 200, {"learners": listed}

    def export(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        return 200, self.store.export_learner(self._name(query, "learner"))

    def delete(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        name = self._name(query, "learner")
        if query.get("confirm") != name:
            raise ValueError("deleting a learner needs confirm= with their name again")
        self.store.get_learner(name)  # 404 before anything else
        if (room := live.get(name)) is not None:
            return 409, {"error": f"{name} is in a live session in room {room}: end it first"}
        removed = self.store.delete_learner(name)  # with their recordings, where the store keeps any
        body: dict[str, object] = {"deleted": name}
        if isinstance(removed, list):
            body["recordings_deleted"] = len(removed)
        return 200, body

    def classes(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        return 200, {"classes": [_class_json(room) for room in self.store.list_classes()]}

    def class_create(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        teacher = query.get("teacher", "").strip() or None
        return 200, _class_json(self.store.create_class(self._name(query, "class"), teacher))

    def class_add(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        room, name = self.store.get_class(self._name(query, "class")), self._name(query, "learner")
        self.store.ensure_learner(name)  # like `voice-tutor class add`: a new name is created
        return 200, _class_json(self.store.add_to_class(room.name, [name]))

    def class_remove(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        room, name = self._name(query, "class"), self._name(query, "learner")
        return 200, _class_json(self.store.remove_from_class(room, [name]))

    def purge(self, query: dict[str, str], live: dict[str, str]) -> tuple[int, object]:
        from voice_tutor.classroom.privacy import purge

        if query.get("confirm") != "purge":
            raise ValueError("purging needs confirm=purge")
        given = query.get("days", "").strip()
        if given and not given.isdigit():
            raise ValueError("days= must be a whole number of days")
        days = int(given) if given else self.retention_days
        if days is None:
            raise ValueError("give days= (or set [privacy] retention_days in the configuration)")
        return 200, {"deleted_turns": purge(self.store, days), "older_than_days": days}


def _class_json(room) -> dict:
    return {"name": room.name, "teacher": room.teacher, "learners": list(room.members)}


def _has_session(room) -> bool:
    return getattr(room.session, "session", None) is not None


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xr_bridge.serve [options]``: the same as ``voice-tutor serve``."""
    from voice_tutor.cli import main as voice_tutor_main

    return voice_tutor_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
