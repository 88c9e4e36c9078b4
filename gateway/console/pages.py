"""The console's HTML: small functions returning escaped markup (no template engine)."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from gateway.console.session import Session

PREFIX = "/_/console"


def e(value: object) -> str:
    return escape(str(value), quote=True)


def url(path: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{PREFIX}{path}" + (f"?{query}" if query else "")


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'


def post_button(session: Session, action: str, label: str, fields: dict[str, str], *,
                confirm: str | None = None, css: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
                     for k, v in fields.items())
    data = f' data-confirm="{e(confirm)}"' if confirm else ""
    return (f'<form method="post" action="{e(action)}" class="inline"{data}>'
            f'{csrf_field(session)}{hidden}<button type="submit" class="{e(css)}">{e(label)}'
            "</button></form>")


NAV = (("locations", "Locations"), ("buckets", "Buckets"), ("jobs", "Jobs"))


def layout(title: str, body: str, session: Session | None, active: str = "",
           heading: bool = True) -> str:
    if session is not None:
        links = "".join(
            f'<a href="{url("/" + name)}"{" class=active" if name == active else ""}>{label}</a>'
            for name, label in NAV)
        user = (f'<span class="who" title="access key {e(session.access_key)}">'
                f'{e(session.account)}</span>'
                f'<form method="post" action="{url("/logout")}" class="inline">'
                f'{csrf_field(session)}<button type="submit" id="logout" class="link">Log out'
                "</button></form>")
        flash = "".join(f'<div class="flash {e(kind)}" role="status">{e(text)}</div>'
                        for kind, text in session.flash)
        session.flash.clear()
        header = (f'<header><a class="brand" href="{url("/")}">S3 gateway</a>'
                  f'<nav>{links}</nav><div class="user">{user}</div></header>')
        csrf_meta = f'<meta name="csrf" content="{e(session.csrf)}">'
    else:
        header = '<header><span class="brand">S3 gateway</span></header>'
        flash = csrf_meta = ""
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"{csrf_meta}<title>{e(title)} · S3 gateway console</title>"
            f'<link rel="icon" href="{PREFIX}/static/favicon.svg" type="image/svg+xml">'
            f'<link rel="stylesheet" href="{PREFIX}/static/console.css">'
            f'<script src="{PREFIX}/static/console.js" defer></script></head>'
            f"<body>{header}<main>{flash}{f'<h1>{e(title)}</h1>' if heading else ''}{body}</main>"
            "</body></html>")


def error_box(text: str) -> str:
    return f'<div class="flash error" role="alert">{e(text)}</div>'


def table(headers: list[str], rows: list[str], empty: str, css: str = "") -> str:
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return (f'<table class="{e(css)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def login_page(token: str, error: str = "", access_key: str = "",
               next_page: str | None = None) -> str:
    box = error_box(error) if error else ""
    body = (f'<div class="login"><h1>Log in</h1>{box}<form method="post" action="{e(url("/login", next=next_page))}" id="login">'
            f'<input type="hidden" name="csrf" value="{e(token)}">'
            '<label>Access key<input name="access_key" id="access_key" autocomplete="username" '
            f'required value="{e(access_key)}" autofocus></label>'
            '<label>Secret key<input name="secret_key" id="secret_key" type="password" '
            'autocomplete="current-password" required></label>'
            '<button type="submit" class="primary">Log in</button></form>'
            '<p class="hint">The keys of an account of this gateway (conf/authdata.json or '
            "<code>python -m gateway accounts</code>). The secret stays on the server for the "
            "session only.</p></div>")
    return layout("Log in", body, None, heading=False)
