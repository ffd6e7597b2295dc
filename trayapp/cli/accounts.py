"""``trayapp accounts ...``: add, list, sign in, sign out, status, and the OAuth client import.

Each command runs on the profile's store as the local engine opened it
(:class:`~trayapp.cli.target.Target`), through
:class:`~trayapp.auth.accounts.AccountManager`, and then tells an engine running for the
profile that the account changed. A caller that already holds an open store (the tray, tests)
calls :func:`handle` with it instead.

Output never contains a token or the client secret: ``--json`` documents are built from
``Account.to_json`` and ``ClientConfig.public_summary``, which hold none by construction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trayapp.cli.args import add_command, add_json
from trayapp.cli.output import EXIT_INTERRUPTED, fail
from trayapp.cli.target import Target
from trayapp.core.errors import TrayappError
from trayapp.core.profile import Profile

if TYPE_CHECKING:
    from trayapp.auth.accounts import AccountManager, ScopeNeeds
    from trayapp.auth.models import Account
    from trayapp.auth.signin import KeyringUnavailable
    from trayapp.core.credentials import CredentialSpec
    from trayapp.core.store import Store

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
DEFAULT_SCOPES = (GMAIL_READONLY, CALENDAR_READONLY)
SIGNIN_TIMEOUT_S = 300.0  # trayapp.auth.signin.DEFAULT_TIMEOUT (not imported: it is slow)

_STATE_TEXT = {
    "signed_in": "signed in",
    "needs_sign_in": "needs sign-in",
    "keyring_not_ready": "waiting for keyring",
    "client_misconfigured": "OAuth client problem",
    "needs_permission": "needs permission",
    "signed_out": "signed out",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``accounts`` and its subcommands to the CLI's subparsers."""
    accounts = add_command(
        subparsers, "accounts", "Google accounts: add, sign in, sign out, status", run
    )
    sub = accounts.add_subparsers(dest="accounts_command", metavar="COMMAND", required=True)

    def browser_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--no-browser",
            action="store_true",
            help="do not open a browser; only print the link to open",
        )
        p.add_argument(
            "--timeout",
            type=float,
            default=SIGNIN_TIMEOUT_S,
            help=f"seconds to wait for the browser (default {int(SIGNIN_TIMEOUT_S)})",
        )

    add = add_command(
        sub,
        "add",
        "add a Google account (opens the browser to sign in), or with --service an account of "
        "another service a plugin uses (its token is asked for, or its browser sign-in opens)",
        run,
    )
    add.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        metavar="SCOPE",
        help="OAuth scope to ask for (repeatable; default: Gmail and Calendar read-only)",
    )
    add.add_argument(
        "--service",
        metavar="SERVICE",
        help="a service an installed pattern needs, e.g. github (see `trayapp patterns list`); "
        "an API token is read from a hidden prompt, or from standard input when it is not a "
        "terminal (never from the command line)",
    )
    add.add_argument("--name", metavar="NAME", help="a name for an account of --service")
    browser_flags(add)

    lst = add_command(sub, "list", "list the accounts and their state", run)
    add_json(lst, "print machine-readable JSON")

    signin = add_command(
        sub, "signin", "sign an account in again (a token account: enter a new token)", run
    )
    signin.add_argument("account", help="account id, email or name")
    signin.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE")
    browser_flags(signin)

    signout = add_command(sub, "signout", "revoke an account's access and forget its tokens", run)
    signout.add_argument("account", help="account id or email")
    signout.add_argument(
        "--remove", action="store_true", help="also remove the account from this profile"
    )

    status = add_command(sub, "status", "detailed state of the accounts and token storage", run)
    status.add_argument("account", nargs="?", help="account id or email (default: all)")
    add_json(status, "print machine-readable JSON")

    client = add_command(sub, "client", "the OAuth client used to sign in", run)
    client_sub = client.add_subparsers(dest="client_command", metavar="COMMAND", required=True)
    imp = add_command(client_sub, "import", "import a Desktop-app OAuth client JSON file", run)
    imp.add_argument("file", type=Path)
    show = add_command(client_sub, "show", "show the configured OAuth client (no secret)", run)
    add_json(show, "print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    """Open the profile's store through a local engine, run the command, close."""
    with Target.from_args(args) as target:
        engine = target.engine()
        try:
            return asyncio.run(handle(args, engine.store, engine.profile.path))
        except KeyboardInterrupt:
            print("trayapp: cancelled", file=sys.stderr)
            return EXIT_INTERRUPTED


async def handle(
    args: argparse.Namespace,
    store: Store,
    profile_dir: Path,
    *,
    manager: AccountManager | None = None,
    out: TextIO | None = None,
    opener: Callable[[str], Any] | None = None,
) -> int:
    """Run one ``accounts`` command on an open store. Returns the exit code."""
    from trayapp.auth.accounts import AccountManager

    out = out or sys.stdout
    own = manager is None
    manager = manager or AccountManager(
        store,
        profile_dir,
        scope_needs=_charm_needs(store, profile_dir),
        services=_services(profile_dir),
    )
    try:
        return await _dispatch(args, manager, out, opener)
    except TrayappError as exc:
        return fail(str(exc))
    finally:
        if own:
            await manager.aclose()


def _charm_needs(store: Store, profile_dir: Path) -> ScopeNeeds:
    """The profile's charms' scope union per account, so `accounts signin` (no --scope) asks
    for what the account's charms need, as the tray and Settings do (plugins installed in the
    profile's plugins folder included)."""
    from trayapp.auth.wiring import charm_scope_needs
    from trayapp.builtins import default_registry
    from trayapp.core.charms import CharmRepo

    built: list[ScopeNeeds] = []

    def needs(account_id: str) -> Iterable[str]:
        if not built:  # the registry (plugins included) only when an account is looked at
            built.append(
                charm_scope_needs(CharmRepo(store).all, default_registry(profile=profile_dir))
            )
        return built[0](account_id)

    return needs


def _services(profile_dir: Path) -> Callable[[], Mapping[str, CredentialSpec]]:
    """The services the installed patterns declare credentials for (plugins included)."""
    from trayapp.auth.wiring import registry_services
    from trayapp.builtins import default_registry

    built: list[Callable[[], Mapping[str, CredentialSpec]]] = []

    def services() -> Mapping[str, CredentialSpec]:
        if not built:
            built.append(registry_services(default_registry(profile=profile_dir)))
        return built[0]()

    return services


async def _dispatch(
    args: argparse.Namespace,
    manager: AccountManager,
    out: TextIO,
    opener: Callable[[str], Any] | None,
) -> int:
    command = args.accounts_command
    if command == "client":
        code = _client(args, manager, out)
        if args.client_command == "import":
            for account in manager.accounts():  # a new client may have changed their states
                await _tell_running_app(manager, account.id)
        return code
    if command == "list":
        return _list(args, manager, out)
    if command == "status":
        return _status(args, manager, out)
    if command == "add" and getattr(args, "service", None):
        return await _add_service(args, manager, out, opener)
    if command == "signin" and not manager.find(args.account).is_google:
        return await _signin_service(args, manager.find(args.account), manager, out, opener)
    if command in ("add", "signin"):
        return await _signin(args, manager, out, opener)
    if command == "signout":
        account = manager.find(args.account)
        result = await manager.sign_out(account.id)
        if args.remove:
            manager.remove(account.id)
            print(f"{result.message} Removed {account.label} from this profile.", file=out)
        else:
            print(result.message, file=out)
        await _tell_running_app(manager, account.id)
        return 0 if result.revoked else 2
    raise TrayappError(f"unknown accounts command {command!r}")


def _client(args: argparse.Namespace, manager: AccountManager, out: TextIO) -> int:
    if args.client_command == "import":
        from trayapp.auth.client_config import load_client_file

        config = load_client_file(args.file)
        changed = manager.import_client(config)
        print(f"Imported OAuth client {config.client_id} from {args.file}.", file=out)
        for account in changed:
            print(f"  {account.label}: {account.cli_text}", file=out)
        return 0
    current = manager.clients.get()
    if getattr(args, "json", False):
        print(json.dumps({"client": current.public_summary() if current else None}), file=out)
    elif current is None:
        print("No OAuth client configured; use `trayapp accounts client import FILE`.", file=out)
    else:
        for key, value in current.public_summary().items():
            print(f"{key}: {value}", file=out)
    return 0


def _list(args: argparse.Namespace, manager: AccountManager, out: TextIO) -> int:
    accounts = manager.accounts()
    if getattr(args, "json", False):
        doc = {
            "accounts": [a.to_json() for a in accounts],
            "secret_storage": manager.secret_storage_status(),
        }
        print(json.dumps(doc, indent=2), file=out)
        return 0
    if not accounts:
        print("No accounts. Add one with `trayapp accounts add`.", file=out)
    for a in accounts:
        who = a.email or "(unknown email)" if a.is_google else f"{a.label} ({a.service_title})"
        print(f"{a.id}  {who}  {_STATE_TEXT[a.state]}", file=out)
    warning = manager.vault.warning
    if warning:
        print(f"warning: {warning}", file=out)
    return 0


def _status(args: argparse.Namespace, manager: AccountManager, out: TextIO) -> int:
    accounts = [manager.find(args.account)] if args.account else manager.accounts()
    rows: list[dict[str, Any]] = []
    for a in accounts:
        meta = manager.auth_cell(a.id).get()
        row = a.to_json()
        row["token"] = {
            "expiry": meta.expiry.isoformat() if meta.expiry else None,
            "refreshed_at": meta.refreshed_at.isoformat() if meta.refreshed_at else None,
            "generation": meta.generation,
            "has_refresh_token": meta.has_refresh_token,
        }
        rows.append(row)
    client = manager.clients.get()
    doc = {
        "accounts": rows,
        "client": client.public_summary() if client else None,
        "secret_storage": manager.secret_storage_status(),
    }
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2), file=out)
        return 0 if all(r["usable"] for r in rows) else 3
    for r in rows:
        service = "" if r["service"] == "google" else f" [{r['service_title']}]"
        print(
            f"{r['email'] or r['label']}{service} ({r['id']}): {_STATE_TEXT[str(r['state'])]}",
            file=out,
        )
        if r["reason"]:
            print(f"  {r['reason']}", file=out)
        if r["hint"]:
            print(f"  To fix it: {r['hint']}.", file=out)
        if r["token"]["expiry"]:
            print(f"  access token valid until {r['token']['expiry']}", file=out)
        print(f"  tokens stored in: {r['secret_store'] or 'nowhere (not signed in)'}", file=out)
    if client is None:
        print("No OAuth client configured; use `trayapp accounts client import FILE`.", file=out)
    warning = manager.vault.warning
    if warning:
        print(f"warning: {warning}", file=out)
    return 0 if all(r["usable"] for r in rows) else 3


async def _signin(
    args: argparse.Namespace,
    manager: AccountManager,
    out: TextIO,
    opener: Callable[[str], Any] | None,
) -> int:
    account_id = manager.find(args.account).id if args.accounts_command == "signin" else None
    scopes = tuple(args.scopes or (() if account_id else DEFAULT_SCOPES))

    def show(url: str) -> None:
        print("Sign in in your browser. If it does not open, open this link:", file=out)
        print(f"  {url}", file=out)
        out.flush()

    from trayapp.auth.signin import KeyringUnavailable, default_opener

    if opener is None:
        opener = _no_browser if args.no_browser else default_opener
    try:
        account = await manager.sign_in(
            account_id, scopes, opener=opener, on_url=show, timeout=args.timeout
        )
    except KeyringUnavailable as exc:
        account = await _choose_secret_store(manager, exc, out)
    print(f"Signed in as {account.email} (account {account.id}).", file=out)
    await _tell_running_app(manager, account.id)
    warning = manager.vault.warning
    if warning:
        print(f"warning: {warning}", file=out)
    return 0


async def _add_service(
    args: argparse.Namespace,
    manager: AccountManager,
    out: TextIO,
    opener: Callable[[str], Any] | None,
) -> int:
    """``accounts add --service S``: a token account (token from a prompt or stdin), or an
    OAuth provider's browser sign-in."""
    spec = manager.service_spec(args.service)
    if spec.kind == "api_token":
        token = _read_token(spec.title, spec.help_url, out)
        account = await manager.add_token(args.service, token, name=args.name)
        print(f"Added {account.label} ({spec.title}, account {account.id}).", file=out)
    else:
        account = await manager.sign_in_service(
            args.service,
            name=args.name,
            opener=_opener(args, opener),
            on_url=_show_url(out),
            timeout=args.timeout,
        )
        print(f"Signed in to {spec.title} as {account.label} (account {account.id}).", file=out)
    await _tell_running_app(manager, account.id)
    return 0


async def _signin_service(
    args: argparse.Namespace,
    account: Account,
    manager: AccountManager,
    out: TextIO,
    opener: Callable[[str], Any] | None,
) -> int:
    """``accounts signin`` of a non-Google account: a new token, or the provider's sign-in."""
    if account.credential_kind == "api_token":
        specs = manager.service_specs()
        help_url = specs[account.service].help_url if account.service in specs else ""
        token = _read_token(account.service_title, help_url, out)
        updated = await manager.add_token(account.service, token, account_id=account.id)
        print(f"Stored the new {account.service_title} token of {updated.label}.", file=out)
    else:
        updated = await manager.sign_in_service(
            account.service,
            account_id=account.id,
            opener=_opener(args, opener),
            on_url=_show_url(out),
            timeout=args.timeout,
        )
        print(f"Signed in to {account.service_title} as {updated.label}.", file=out)
    await _tell_running_app(manager, updated.id)
    return 0


def _read_token(title: str, help_url: str, out: TextIO) -> str:
    """The token from a hidden prompt on a terminal, else one line of standard input.

    Never an argument: command lines are visible to every user in the process list and land
    in the shell's history.
    """
    if sys.stdin.isatty():
        import getpass

        if help_url:
            print(f"Make a {title} token at {help_url}", file=out)
        token = getpass.getpass(f"{title} token (input hidden): ")
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise TrayappError(
            f"no {title} token was given; type it at the prompt, or pipe it in: "
            f'`printf %s "$TOKEN" | trayapp accounts add --service ...`'
        )
    return token


def _opener(args: argparse.Namespace, opener: Callable[[str], Any] | None) -> Callable[[str], Any]:
    if opener is not None:
        return opener
    from trayapp.auth.signin import default_opener

    return _no_browser if args.no_browser else default_opener


def _show_url(out: TextIO) -> Callable[[str], None]:
    def show(url: str) -> None:
        print("Sign in in your browser. If it does not open, open this link:", file=out)
        print(f"  {url}", file=out)
        out.flush()

    return show


async def _choose_secret_store(
    manager: AccountManager, problem: KeyringUnavailable, out: TextIO
) -> Account:
    """The keyring could not store the new sign-in: let the user choose (on a terminal).

    The grant waits in memory, so neither choice needs another consent page. Without a
    terminal the sign-in ends with the message and how to choose next time.
    """
    print(f"trayapp: {problem} ({problem.detail})", file=sys.stderr)
    while sys.stdin.isatty():
        print(
            "Unlock or create the keyring, then type 'r' to retry; 'f' keeps the sign-in in a "
            "file only you can read; 'c' cancels: ",
            end="",
            file=out,
            flush=True,
        )
        answer = (await asyncio.to_thread(sys.stdin.readline)).strip().lower()
        if answer in ("r", "f"):
            try:
                return await manager.store_pending_grant(problem.pending_id, use_file=answer == "f")
            except KeyringUnavailable as again:
                print(f"trayapp: {again} ({again.detail})", file=sys.stderr)
                continue
        if answer in ("c", ""):
            break
    manager.discard_pending_grant(problem.pending_id)
    raise TrayappError(
        "sign-in not saved; unlock or create the keyring and sign in again, or run with "
        "TRAYAPP_SECRET_STORE=file to keep tokens in a file only you can read"
    )


async def _tell_running_app(manager: AccountManager, account_id: str) -> None:
    """A tray or headless engine on this profile holds the account in memory: tell it.

    Without this its parked charms would stay parked after a sign-in here, and it would keep
    the old grant's tokens; ``account-changed`` makes it re-read the account and unpark them.
    Nothing runs: nothing to do.
    """
    target = Target(Profile(Path(manager.profile_dir)))
    command = {"cmd": "account-changed", "account": account_id}
    await asyncio.to_thread(target.notify, command, "account change")


def _no_browser(url: str) -> bool:
    return True
