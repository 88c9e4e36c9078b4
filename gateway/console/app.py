"""The web console: server-rendered pages over the gateway's own S3 API.

Every action is a real S3 request to the gateway's S3 listener on loopback, signed with the
logged-in account's key (gateway/console/s3client.py), so authentication, policies and ACLs
decide exactly as for any client. Object bytes never pass through here: downloads are
redirects to presigned GETs, uploads are multipart uploads whose parts the browser PUTs to
presigned URLs. Only health (the monitor's cached state) and job progress are read directly.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway.console import pages
from gateway.console.pages import PREFIX, e, layout, post_button, size_text, table, url
from gateway.console.s3client import Credentials, S3Client, S3Failure, gather_limited
from gateway.console.session import COOKIE, LOGIN_COOKIE, Session, Sessions
from gateway.console.sigv4 import object_path, presign

log = logging.getLogger("gateway.console")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # (no-referrer makes browsers send Origin: null)
    "Cache-Control": "no-store",
}
# A key that no longer works (removed, disabled, secret changed): the session is over.
DEAD_KEY_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch")
PAGE_SIZE = 100
USAGE_PAGES = 10  # bucket counts list at most 10 pages of 1000 keys; beyond, "10000+"
SIGN_BATCH = 100  # presigned part URLs handed out per call
MIN_PART = 8 * 1024 * 1024
MAX_PARTS = 10_000
MAX_OBJECT = 5 * 1024 ** 4
DOWNLOAD_EXPIRES = 300
UPLOAD_EXPIRES = 3600
SHARE_CHOICES = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"))

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def internal_endpoint(settings: Any) -> str:
    """Where the console reaches the gateway's own S3 listener: loopback when it listens on
    every address, else the address it listens on."""
    host = settings.listen_on or "0.0.0.0"
    try:
        address = ipaddress.ip_address(host)
        if address.is_unspecified:
            host = "::1" if address.version == 6 else "127.0.0.1"
        if address.version == 6 or ":" in host:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name: use it as it is
    scheme = "https" if getattr(settings, "tls", None) is not None else "http"
    return f"{scheme}://{host}:{settings.port}"


def unreachable(exc: BaseException) -> S3Failure:
    """The gateway's own S3 listener did not answer (shutting down, overloaded)."""
    log.warning("console: the S3 listener did not answer: %s", type(exc).__name__)
    return S3Failure(503, "ServiceUnavailable", "the gateway's S3 listener did not answer; "
                     "try again")


def secured(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def html(text: str, status: int = 200) -> web.Response:
    return secured(web.Response(text=text, status=status, content_type="text/html"))


def redirect(location: str) -> web.Response:
    return secured(web.Response(status=303, headers={"Location": location}))


def json_answer(data: Any, status: int = 200) -> web.Response:
    return secured(web.json_response(data, status=status))


class Console:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        settings = gateway.settings
        self.settings = settings.console
        self.s3_port: int = settings.port
        # Our own listener, with our own certificate: a loopback call needs no verification.
        self.s3 = S3Client(internal_endpoint(settings),
                           ssl=False if getattr(settings, "tls", None) is not None else None)
        self.sessions = Sessions(self.settings.session_minutes * 60)
        self._static: dict[str, bytes] = {}

    async def close(self) -> None:
        await self.s3.close()

    # --- mounting -------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """The console's routes, under /_/console/ (added before the S3 catch-all)."""
        page = self._page
        api = self._api
        routes: list[tuple[str, str, Any]] = [
            ("GET", "", self.root),
            ("GET", "/", self.root),
            ("GET", "/login", self.login_form),
            ("POST", "/login", self.login),
            ("POST", "/logout", page(self.logout)),
            ("GET", "/locations", page(self.locations)),
            ("GET", "/api/locations", api(self.locations_json)),
            ("GET", "/buckets", page(self.buckets)),
            ("POST", "/buckets/create", page(self.create_bucket)),
            ("POST", "/buckets/delete", page(self.delete_bucket)),
            ("POST", "/buckets/versioning", page(self.set_versioning)),
            ("GET", "/b/{bucket}", page(self.objects)),
            ("GET", "/object", page(self.object_page)),
            ("POST", "/object/delete", page(self.delete_object)),
            ("POST", "/object/share", page(self.share_object)),
            ("GET", "/download", page(self.download)),
            ("POST", "/api/upload/start", api(self.upload_start)),
            ("POST", "/api/upload/sign", api(self.upload_sign)),
            ("POST", "/api/upload/complete", api(self.upload_complete)),
            ("POST", "/api/upload/abort", api(self.upload_abort)),
            ("GET", "/jobs", page(self.jobs)),
            ("GET", "/static/{name}", self.static),
        ]
        for method, path, handler in routes:
            router.add_route(method, PREFIX + path, handler)

    def app(self, s3_handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
            **app_args: Any) -> web.Application:
        """The console's own listener (config.json console.port): the console, and the S3
        requests its presigned upload URLs make (so the browser's part PUTs stay on this
        origin); anything else is not served here."""
        app = web.Application(**app_args)
        self.add_routes(app.router)

        async def other(request: web.Request) -> web.StreamResponse:
            if "X-Amz-Signature" in request.query:
                return await s3_handler(request)
            if request.path == "/" and request.method in ("GET", "HEAD"):
                return redirect(PREFIX + "/")
            return secured(web.Response(status=404, text="not found"))

        app.router.add_route("*", "/{tail:[\\s\\S]*}", other)
        return app

    # --- sessions, CSRF -----------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        # Browsers send Origin on POSTs; SameSite=Strict and the token are the main guard.
        origin = request.headers.get("Origin")
        if not origin or origin == "null":
            return origin is None
        return origin.split("://", 1)[-1] == request.host

    def _csrf_ok(self, request: web.Request, session: Session, sent: str | None) -> bool:
        return (sent is not None and self._same_origin(request)
                and hmac.compare_digest(sent.encode(), session.csrf.encode()))

    def _page(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                if request.method == "GET":
                    return redirect(url("/login", next=request.path_qs))
                return redirect(url("/login"))
            if request.method == "POST":
                form = await request.post()
                request["form"] = form
                sent = form.get("csrf")
                if not self._csrf_ok(request, session, sent if isinstance(sent, str) else None):
                    return html(layout("Refused", pages.error_box(
                        "The form was stale or did not come from this console; reload the "
                        "page and try again."), session), status=403)
            try:
                return await handler(request, session)
            except S3Failure as failure:
                return self._failed(request, session, failure)
            except (TimeoutError, aiohttp.ClientError) as exc:
                return self._failed(request, session, unreachable(exc))

        return wrapped

    def _api(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                return json_answer({"error": "NotLoggedIn", "message": "log in again"}, 401)
            if request.method == "POST":
                if not self._csrf_ok(request, session, request.headers.get("X-CSRF-Token")):
                    return json_answer({"error": "BadToken", "message": "reload the page"}, 403)
                try:
                    request["json"] = await request.json()
                except ValueError:
                    return json_answer({"error": "BadRequest", "message": "not JSON"}, 400)
                if not isinstance(request["json"], dict):
                    return json_answer({"error": "BadRequest", "message": "not an object"}, 400)
            try:
                return await handler(request, session)
            except S3Failure as failure:
                if failure.code in DEAD_KEY_CODES:
                    self.sessions.end(session.id)
                return json_answer({"error": failure.code, "message": failure.message},
                                   failure.status if failure.status >= 400 else 500)
            except (KeyError, TypeError, ValueError) as exc:
                return json_answer({"error": "BadRequest", "message": str(exc)}, 400)
            except (TimeoutError, aiohttp.ClientError) as exc:
                failure = unreachable(exc)
                return json_answer({"error": failure.code, "message": failure.message}, 503)

        return wrapped

    def _failed(self, request: web.Request, session: Session,
                failure: S3Failure) -> web.StreamResponse:
        if failure.code in DEAD_KEY_CODES:
            self.sessions.end(session.id)
            return redirect(url("/login", why="expired"))
        text = f"{failure.code}: {failure.message}" if failure.message else failure.code
        if request.method == "POST":  # an action: back where it came from, saying why
            session.say("error", text)
            back = request.get("form", {}).get("back")
            return redirect(back if isinstance(back, str) and back.startswith(PREFIX + "/")
                            else url("/buckets"))
        return html(layout("Error", pages.error_box(text), session),
                    status=failure.status if failure.status >= 400 else 500)

    # --- login ----------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            return redirect(url("/login"))
        return redirect(url("/buckets"))

    def _login_page(self, request: web.Request, error: str = "", access_key: str = "",
                    status: int = 200) -> web.Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        next_page = request.query.get("next")
        response = html(pages.login_page(token, error, access_key, next_page), status=status)
        response.set_cookie(LOGIN_COOKIE, token, path=PREFIX + "/", httponly=True,
                            samesite="Strict", secure=request.secure, max_age=3600)
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is not None:
            return redirect(url("/buckets"))
        why = request.query.get("why")
        return self._login_page(request, "Your session ended; log in again." if why else "")

    async def _lookup(self, access_key: str) -> tuple[Any, str] | None:
        """gateway.accounts' lookup (whatever its store: file, environment, runtime)."""
        found = self.gateway.accounts.lookup(access_key)
        if inspect.isawaitable(found):
            found = await found
        return found

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        access_key = str(form.get("access_key") or "").strip()
        secret = str(form.get("secret_key") or "")
        token = str(form.get("csrf") or "")
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not hmac.compare_digest(token.encode(), cookie.encode()) \
                or not self._same_origin(request):
            return self._login_page(request, "The login form expired; try again.",
                                    access_key, status=403)
        client = request.remote or "?"
        if self.sessions.login_blocked(client):
            return self._login_page(request, "Too many failed logins; wait a few minutes.",
                                    access_key, status=429)
        found = await self._lookup(access_key) if access_key else None
        stored = found[1] if found is not None else secrets.token_hex(20)
        if found is None or not hmac.compare_digest(stored.encode(), secret.encode()):
            self.sessions.login_failed(client)
            log.warning("console: failed login for access key %r from %s", access_key[:64],
                        client)
            return self._login_page(request, "Wrong access key or secret key.", access_key,
                                    status=401)
        account = found[0]
        session = self.sessions.create(Credentials(access_key, secret),
                                       getattr(account, "name", access_key))
        log.info("console: %s (%s) logged in from %s", session.account, access_key, client)
        target = request.query.get("next") or ""
        response = redirect(target if target.startswith(PREFIX + "/") and "//" not in target
                            else url("/buckets"))
        # A browser-session cookie: the server ends the session when idle (or at 12 h).
        response.set_cookie(COOKIE, session.id, path=PREFIX + "/", httponly=True,
                            samesite="Strict", secure=request.secure)
        response.del_cookie(LOGIN_COOKIE, path=PREFIX + "/")
        return response

    async def logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        self.sessions.end(session.id)
        response = redirect(url("/login"))
        response.del_cookie(COOKIE, path=PREFIX + "/")
        return response

    # --- locations ------------------------------------------------------------------------

    def _health(self) -> dict[str, dict[str, Any]]:
        return self.gateway.health.deep()

    async def locations(self, request: web.Request, session: Session) -> web.StreamResponse:
        usage = await self._usage_by_location(session)
        rows = []
        for name, info in self._health().items():
            buckets, objects, size, complete = usage.get(name, (0, 0, 0, True))
            more = "" if complete else "+"
            latency = "" if info["latencyMs"] is None else f"{info['latencyMs']} ms"
            problem = "" if info["state"] == "up" else info["message"] or ""
            rows.append(
                f'<tr data-location="{e(name)}"><td class="name">{e(name)}</td>'
                f'<td>{e(info["type"])}</td>'
                f'<td><span class="state {e(info["state"])}" data-field="state">'
                f'{e(info["state"])}</span></td>'
                f'<td data-field="lastCheck">{e(info["lastCheck"] or "never")}</td>'
                f'<td data-field="latencyMs" class="num">'
                f"{e(latency)}</td>"
                f'<td data-field="message" class="message">{e(problem)}</td>'
                f'<td class="num">{buckets}</td><td class="num">{objects}{more}</td>'
                f'<td class="num">{size_text(size)}{more}</td></tr>')
        body = (
            '<p class="hint">Health from the gateway\'s own checks (refreshed live). Buckets, '
            "objects and bytes count your buckets only.</p>"
            + table(["Location", "Type", "State", "Last check", "Latency", "Last error",
                     "Your buckets", "Objects", "Size"], rows, "No locations.",
                    css="locations live"))
        return html(layout("Locations", body, session, "locations"))

    async def locations_json(self, request: web.Request, session: Session) -> web.StreamResponse:
        return json_answer(self._health())

    async def _bucket_rows(self, session: Session) -> list[dict[str, Any]]:
        creds = session.credentials
        buckets = await self.s3.list_buckets(creds)

        async def describe(name: str, created: str) -> dict[str, Any]:
            info: dict[str, Any] = {"name": name, "created": created}
            results = await gather_limited(
                3, self.s3.bucket_location(creds, name), self.s3.bucket_versioning(creds, name),
                self.s3.bucket_usage(creds, name, USAGE_PAGES))
            for field, value in zip(("location", "versioning", "usage"), results, strict=True):
                info[field] = None if isinstance(value, BaseException) else value
            return info

        found = await gather_limited(8, *(describe(n, c) for n, c in buckets))
        return [row for row in found if isinstance(row, dict)]

    async def _usage_by_location(self, session: Session) -> dict[str, tuple[int, int, int, bool]]:
        try:
            rows = await self._bucket_rows(session)
        except S3Failure:
            return {}
        usage: dict[str, tuple[int, int, int, bool]] = {}
        for row in rows:
            buckets, objects, size, complete = usage.get(row["location"], (0, 0, 0, True))
            count, nbytes, whole = row["usage"] or (0, 0, False)
            usage[row["location"]] = (buckets + 1, objects + count, size + nbytes,
                                      complete and whole)
        return usage

    # --- buckets --------------------------------------------------------------------------

    async def buckets(self, request: web.Request, session: Session) -> web.StreamResponse:
        rows_data = await self._bucket_rows(session)
        back = url("/buckets")
        rows = []
        for row in rows_data:
            name = row["name"]
            versioning = row["versioning"] or "?"
            usage = row["usage"]
            if usage is None:
                count = total = "?"
            else:
                more = "" if usage[2] else "+"
                count, total = f"{usage[0]}{more}", f"{size_text(usage[1])}{more}"
            toggle = post_button(
                session, url("/buckets/versioning"),
                "Suspend" if versioning == "Enabled" else "Enable",
                {"bucket": name, "status": "Suspended" if versioning == "Enabled" else "Enabled",
                 "back": back}, css="small")
            delete = post_button(session, url("/buckets/delete"), "Delete",
                                 {"bucket": name, "back": back},
                                 confirm=f"Delete the bucket {name}? It must be empty.",
                                 css="small danger")
            rows.append(
                f'<tr data-bucket="{e(name)}"><td class="name"><a href="{e(url("/b/" + name))}">'
                f'{e(name)}</a></td><td>{e(row["location"] or "?")}</td>'
                f'<td>{e(versioning)} {toggle}</td><td class="num">{e(count)}</td>'
                f'<td class="num">{e(total)}</td><td>{e(row["created"][:19].replace("T", " "))}'
                f"</td><td>{delete}</td></tr>")
        options = "".join(f'<option value="{e(loc.name)}">{e(loc.name)} ({e(loc.type_name)})'
                          "</option>" for loc in self.gateway.locations)
        create = (f'<form method="post" action="{url("/buckets/create")}" class="bar" '
                  f'id="create-bucket">{pages.csrf_field(session)}'
                  f'<input type="hidden" name="back" value="{e(back)}">'
                  '<label>New bucket <input name="bucket" id="bucket-name" required '
                  'pattern="[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]" placeholder="my-bucket"></label>'
                  f'<label>Location <select name="location" id="bucket-location">{options}'
                  '</select></label><button type="submit" class="primary">Create</button></form>')
        body = create + table(["Bucket", "Location", "Versioning", "Objects", "Size", "Created",
                               ""], rows, "No buckets yet: create one above.", css="buckets")
        return html(layout("Buckets", body, session, "buckets"))

    @staticmethod
    def _field(request: web.Request, name: str) -> str:
        value = request["form"].get(name)
        return value if isinstance(value, str) else ""

    async def create_bucket(self, request: web.Request, session: Session) -> web.StreamResponse:
        name = self._field(request, "bucket").strip()
        location = self._field(request, "location")
        await self.s3.create_bucket(session.credentials, name, location)
        session.say("ok", f"Bucket {name} created on {location}.")
        return redirect(url("/buckets"))

    async def delete_bucket(self, request: web.Request, session: Session) -> web.StreamResponse:
        name = self._field(request, "bucket")
        await self.s3.delete_bucket(session.credentials, name)
        session.say("ok", f"Bucket {name} deleted.")
        return redirect(url("/buckets"))

    async def set_versioning(self, request: web.Request, session: Session) -> web.StreamResponse:
        name, status = self._field(request, "bucket"), self._field(request, "status")
        await self.s3.put_versioning(session.credentials, name, status)
        session.say("ok", f"Versioning of {name}: {status}.")
        return redirect(self._back(request, url("/buckets")))

    def _back(self, request: web.Request, default: str) -> str:
        back = self._field(request, "back")
        return back if back.startswith(PREFIX + "/") and "//" not in back[1:] else default

    # --- objects --------------------------------------------------------------------------

    async def objects(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket = request.match_info["bucket"]
        prefix = request.query.get("prefix", "")
        token = request.query.get("token") or None
        page = await self.s3.list_objects(session.credentials, bucket, prefix, token, PAGE_SIZE)
        here = request.path_qs
        crumbs = [f'<a href="{e(url("/b/" + bucket))}">{e(bucket)}</a>']
        walked = ""
        for part in prefix.split("/")[:-1] if prefix else []:
            walked += part + "/"
            crumbs.append(f'<a href="{e(url("/b/" + bucket, prefix=walked))}">{e(part)}</a>')
        rows = []
        for folder in page.prefixes:
            label = folder[len(prefix):]
            rows.append(f'<tr class="folder"><td class="name" colspan="4">'
                        f'<a href="{e(url("/b/" + bucket, prefix=folder))}" '
                        f'data-folder="{e(folder)}"><span class="icon folder"></span>{e(label)}</a></td></tr>')
        for obj in page.objects:
            label = obj.key[len(prefix):] or obj.key
            actions = (f'<a class="button small" href="{e(url("/download", bucket=bucket, key=obj.key))}" '
                       f'data-download="{e(obj.key)}">Download</a> '
                       + post_button(session, url("/object/delete"), "Delete",
                                     {"bucket": bucket, "key": obj.key, "back": here},
                                     confirm=f"Delete {obj.key}?", css="small danger"))
            rows.append(f'<tr data-key="{e(obj.key)}"><td class="name">'
                        f'<span class="icon file"></span><a href="{e(url("/object", bucket=bucket, key=obj.key))}">'
                        f"{e(label)}</a>"
                        f'</td><td class="num">{size_text(obj.size)}</td>'
                        f'<td>{e(obj.last_modified[:19].replace("T", " "))}</td>'
                        f'<td class="actions">{actions}</td></tr>')
        pager = []
        if token:
            pager.append(f'<a class="button" href="{e(url("/b/" + bucket, prefix=prefix or None))}">'
                         "« First page</a>")
        if page.next_token:
            pager.append(f'<a class="button" id="next-page" href="'
                         f'{e(url("/b/" + bucket, prefix=prefix or None, token=page.next_token))}">'
                         "Next page »</a>")
        upload = (
            f'<form class="upload bar" id="upload" data-bucket="{e(bucket)}" '
            f'data-prefix="{e(prefix)}">'
            '<label>File <input type="file" id="upload-file" required></label>'
            f'<label>Name <input id="upload-name" placeholder="{e(prefix)}(file name)" '
            'title="Optional: a name with / puts it in a folder"></label>'
            '<button type="submit" class="primary" id="upload-button">Upload</button>'
            '<progress id="upload-progress" max="100" value="0" hidden></progress>'
            '<span id="upload-status" role="status"></span></form>')
        body = (f'<p class="crumbs">{" / ".join(crumbs)} /</p>{upload}'
                + table(["Name", "Size", "Last modified", ""], rows,
                        "Nothing here yet." if not prefix else "No objects under this prefix.",
                        css="objects")
                + f'<p class="pager">{" ".join(pager)}</p>')
        return html(layout(f"Objects in {bucket}", body, session, "buckets"))

    async def object_page(self, request: web.Request, session: Session,
                          shared: tuple[str, str] | None = None) -> web.StreamResponse:
        source = request["form"] if shared else request.query
        bucket, key = str(source.get("bucket", "")), str(source.get("key", ""))
        version_id = str(source.get("versionId") or "") or None
        creds = session.credentials
        gone = ""
        try:
            head = {k.lower(): v for k, v in
                    (await self.s3.head_object(creds, bucket, key, version_id)).items()}
        except S3Failure as failure:
            if failure.status not in (404, 405):  # 405: that version is a delete marker
                raise
            # Deleted (its latest version is a delete marker): its versions still show.
            head, gone = {}, pages.error_box("No current version: the object was deleted.")
        tags, versions = await gather_limited(
            2, self.s3.object_tags(creds, bucket, key, version_id),
            self.s3.key_versions(creds, bucket, key))
        here = url("/object", bucket=bucket, key=key, versionId=version_id)
        shown = ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control",
                 "Content-Disposition", "Content-Encoding", "Content-Language", "Expires",
                 "x-amz-version-id", "x-amz-storage-class", "x-amz-server-side-encryption")
        props = [(name, head[name.lower()]) for name in shown if name.lower() in head]
        props += [(name, value) for name, value in head.items()
                  if name.startswith("x-amz-meta-")]
        prop_rows = [f"<tr><th>{e(n)}</th><td>{e(v)}</td></tr>" for n, v in props]
        tag_rows = ([] if isinstance(tags, BaseException) else
                    [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in tags])
        version_rows = []
        if not isinstance(versions, BaseException):
            for v in versions:
                link = ("" if v.delete_marker else
                        f'<a class="button small" href="'
                        f'{e(url("/download", bucket=bucket, key=key, versionId=v.version_id))}">'
                        "Download</a> ")
                delete = post_button(session, url("/object/delete"), "Delete",
                                     {"bucket": bucket, "key": key, "versionId": v.version_id,
                                      "back": url("/object", bucket=bucket, key=key)},
                                     confirm=f"Delete version {v.version_id} for good?",
                                     css="small danger")
                version_rows.append(
                    f'<tr><td><a href="{e(url("/object", bucket=bucket, key=key, versionId=v.version_id))}">'
                    f"{e(v.version_id)}</a></td><td>{'latest' if v.latest else ''}</td>"
                    f"<td>{e(v.last_modified[:19].replace('T', ' '))}</td>"
                    f"<td class=num>{'delete marker' if v.delete_marker else size_text(v.size)}"
                    f"</td><td>{link}{delete}</td></tr>")
        choices = "".join(f'<option value="{s}">{label}</option>' for s, label in SHARE_CHOICES)
        share_form = (f'<form method="post" action="{url("/object/share")}" class="bar" '
                      f'id="share">{pages.csrf_field(session)}'
                      f'<input type="hidden" name="bucket" value="{e(bucket)}">'
                      f'<input type="hidden" name="key" value="{e(key)}">'
                      + (f'<input type="hidden" name="versionId" value="{e(version_id)}">'
                         if version_id else "")
                      + f'<label>Share a link valid for <select name="expires">{choices}'
                      '</select></label><button type="submit">Make link</button></form>')
        if shared:
            link, until = shared
            share_form += (f'<div class="share-link"><input readonly id="share-url" '
                           f'value="{e(link)}"><button type="button" class="copy" '
                           f'data-copy="share-url">Copy</button>'
                           f'<span class="hint">valid for {e(until)}</span></div>')
        folder = key.rsplit("/", 1)[0] + "/" if "/" in key else None
        actions = (f'<div class="bar"><a class="button" href="'
                   f'{e(url("/b/" + bucket, prefix=folder))}">« {e(bucket)}/{e(folder or "")}</a>'
                   f'<a class="button primary" href="'
                   f'{e(url("/download", bucket=bucket, key=key, versionId=version_id))}">'
                   "Download</a>"
                   + post_button(session, url("/object/delete"), "Delete",
                                 {"bucket": bucket, "key": key, "back": here,
                                  **({"versionId": version_id} if version_id else {})},
                                 confirm=f"Delete {key}?", css="danger") + "</div>")
        body = (gone + actions + "<h2>Properties</h2>"
                + f'<table class="props">{"".join(prop_rows)}</table>'
                + "<h2>Tags</h2>" + table(["Key", "Value"], tag_rows, "No tags.")
                + "<h2>Versions</h2>" + table(["Version", "", "Last modified", "Size", ""],
                                              version_rows, "No versions listed.")
                + "<h2>Share</h2>" + share_form)
        return html(layout(key, body, session, "buckets"))

    async def delete_object(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket, key = self._field(request, "bucket"), self._field(request, "key")
        version_id = self._field(request, "versionId") or None
        await self.s3.delete_object(session.credentials, bucket, key, version_id)
        session.say("ok", f"Deleted {key}" + (f" (version {version_id})." if version_id else "."))
        back = self._back(request, url("/b/" + bucket))
        if back.startswith(url("/object")) and not version_id:
            folder = key.rsplit("/", 1)[0] + "/" if "/" in key else None
            back = url("/b/" + bucket, prefix=folder)
        return redirect(back)

    def _s3_origin(self, request: web.Request) -> str:
        """The S3 listener as this browser reaches it: the console's own origin when it is
        served on the S3 port, else the same host name on the S3 port."""
        if request.url.port == self.s3_port or not self.settings.port:
            return f"{request.scheme}://{request.host}"
        host = request.url.raw_host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{request.scheme}://{host}:{self.s3_port}"

    def _presigned(self, origin: str, session: Session, method: str, bucket: str,
                   key: str, params: dict[str, str], expires: int) -> str:
        host = origin.split("://", 1)[1]
        path = object_path(bucket, key)
        query = presign(method, host, path, params, expires, session.access_key,
                        session.credentials.secret)
        return f"{origin}{path}?{query}"

    async def share_object(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket, key = self._field(request, "bucket"), self._field(request, "key")
        version_id = self._field(request, "versionId") or None
        expires_text = self._field(request, "expires")
        expires = int(expires_text) if expires_text.isdigit() else 0
        choices = dict(SHARE_CHOICES)
        if expires not in choices:
            raise S3Failure(400, "InvalidArgument", "unknown expiry")
        params = {"versionId": version_id} if version_id else {}
        link = self._presigned(self._s3_origin(request), session, "GET", bucket, key, params,
                               expires)
        return await self.object_page(request, session, shared=(link, choices[expires]))

    async def download(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket, key = request.query.get("bucket", ""), request.query.get("key", "")
        version_id = request.query.get("versionId") or None
        name = key.rsplit("/", 1)[-1] or "download"
        params = {"response-content-disposition":
                  f"attachment; filename*=UTF-8''{quote(name, safe='')}"}
        if version_id:
            params["versionId"] = version_id
        return redirect(self._presigned(self._s3_origin(request), session, "GET", bucket, key,
                                        params, DOWNLOAD_EXPIRES))

    # --- uploads: multipart, parts PUT by the browser to presigned URLs --------------------

    @staticmethod
    def _target(request: web.Request) -> tuple[str, str]:
        data = request["json"]
        bucket, key = data["bucket"], data["key"]
        if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
            raise ValueError("bucket and key are required")
        return bucket, key

    async def upload_start(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket, key = self._target(request)
        size = request["json"]["size"]
        content_type = request["json"].get("type") or "application/octet-stream"
        if not isinstance(size, int) or not 0 <= size <= MAX_OBJECT:
            raise ValueError("size must be 0..5 TiB")
        mib = 1024 * 1024
        part_size = max(MIN_PART, math.ceil(size / MAX_PARTS / mib) * mib)
        parts = max(1, math.ceil(size / part_size))
        upload_id = await self.s3.create_upload(session.credentials, bucket, key,
                                                str(content_type)[:200])
        return json_answer({"uploadId": upload_id, "partSize": part_size, "parts": parts})

    async def upload_sign(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket, key = self._target(request)
        data = request["json"]
        upload_id, first, last = str(data["uploadId"]), int(data["first"]), int(data["last"])
        if not 1 <= first <= last <= MAX_PARTS or last - first >= SIGN_BATCH:
            raise ValueError(f"parts 1..{MAX_PARTS}, at most {SIGN_BATCH} at a time")
        # The browser PUTs to the origin it is on, so its XHRs stay same-origin.
        origin = f"{request.scheme}://{request.host}"
        urls = {str(n): self._presigned(origin, session, "PUT", bucket, key,
                                        {"partNumber": str(n), "uploadId": upload_id},
                                        UPLOAD_EXPIRES)
                for n in range(first, last + 1)}
        return json_answer({"urls": urls})

    async def upload_complete(self, request: web.Request,
                              session: Session) -> web.StreamResponse:
        bucket, key = self._target(request)
        etags = request["json"]["etags"]
        if not isinstance(etags, list) or not all(isinstance(t, str) for t in etags):
            raise ValueError("etags must be a list of strings")
        etag = await self.s3.complete_upload(session.credentials, bucket, key,
                                             str(request["json"]["uploadId"]), etags)
        return json_answer({"etag": etag})

    async def upload_abort(self, request: web.Request, session: Session) -> web.StreamResponse:
        bucket, key = self._target(request)
        await self.s3.abort_upload(session.credentials, bucket, key,
                                   str(request["json"]["uploadId"]))
        return json_answer({"aborted": True})

    # --- jobs -----------------------------------------------------------------------------

    async def jobs(self, request: web.Request, session: Session) -> web.StreamResponse:
        counts_of = getattr(self.gateway.metadata, "job_counts", None)
        counts: dict[str, dict[str, int]] = {}
        note = ""
        if counts_of is not None:
            try:
                counts = await counts_of()
            except NotImplementedError:
                pass
            except Exception as exc:  # noqa: BLE001 - the page still renders, saying why
                note = pages.error_box(f"Job progress is not available: {type(exc).__name__}")
        rows = [f'<tr><td class="name">{e(kind)}</td>'
                + "".join(f'<td class="num">{int(c.get(s, 0))}</td>'
                          for s in ("pending", "running", "failed", "done"))
                + "</tr>" for kind, c in sorted(counts.items())]
        body = note + (
            '<p class="hint">Background work of every gateway sharing this metadata store '
            "(migrations, imports, lifecycle, mirror repair).</p>"
            + table(["Kind", "Pending", "Running", "Failed", "Done"], rows, "No jobs.",
                    css="jobs"))
        return html(layout("Jobs", body, session, "jobs"))

    # --- static assets --------------------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        kind = STATIC_TYPES.get(path.suffix)
        if kind is None or "/" in name or name.startswith(".") or not path.is_file():
            return secured(web.Response(status=404, text="not found"))
        body = self._static.get(name)
        if body is None:  # a few small files, read once
            body = self._static[name] = path.read_bytes()
        response = web.Response(body=body, content_type=kind)
        response.headers["Cache-Control"] = "max-age=300"
        return secured(response)
