"""``trayapp plugins install|list|remove``: plugin packages in the profile's plugins folder."""

from __future__ import annotations

import argparse

from trayapp.cli.args import add_command, add_json
from trayapp.cli.output import EXIT_OK, JSON_VERSION, note, print_json, print_table
from trayapp.core.profile import Profile

RESTART = (
    "it is used from the next start of Pattern Sync (quit the tray or headless engine and "
    "start it again)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugins = add_command(
        sub, "plugins", "install, list and remove plugin patterns (in the profile)", None
    )
    psub = plugins.add_subparsers(title="plugins commands", metavar="ACTION", required=True)
    install = add_command(
        psub,
        "install",
        "install a plugin: a wheel, a project folder or a package name",
        cmd_install,
    )
    install.add_argument(
        "plugin", metavar="PLUGIN", help="a .whl file, a project folder, or a package name"
    )
    add_json(install)
    plist = add_command(psub, "list", "list installed plugins and whether they load", cmd_list)
    add_json(plist)
    remove = add_command(psub, "remove", "remove an installed plugin", cmd_remove)
    remove.add_argument(
        "name", metavar="NAME", help="the plugin's name (see 'trayapp plugins list')"
    )
    add_json(remove)


def _folder(args: argparse.Namespace) -> Profile:
    return Profile.resolve(getattr(args, "profile", None))


def _problems(profile: Profile) -> dict[str, str]:
    """Plugin distribution name -> why it did not load (nothing for the ones that load)."""
    from trayapp.builtins import default_registry
    from trayapp.plugins import normalize

    registry = default_registry(profile=profile.path)
    return {
        normalize(problem.distribution or problem.entry_point): problem.message
        for problem in registry.problems
    }


def cmd_install(args: argparse.Namespace) -> int:
    from trayapp.plugins import install, normalize, plugins_dir, remove

    profile = _folder(args)
    folder = plugins_dir(profile.path)
    added = install(folder, args.plugin)
    problems = _problems(profile)
    for plugin in added:
        problem = problems.get(normalize(plugin.name))
        if problem is not None:  # it cannot work in this app: do not leave it half there
            remove(folder, plugin.name)
            from trayapp.plugins import PluginError

            raise PluginError(f"{plugin.name} {plugin.version} was not installed: {problem}")
    if args.json:
        print_json(
            {
                "version": JSON_VERSION,
                "installed": [p.to_json() for p in added],
                "folder": str(folder),
            }
        )
        return EXIT_OK
    for plugin in added:
        ids = ", ".join(ep.split(" = ")[0] for ep in plugin.patterns)
        print(f"installed {plugin.name} {plugin.version} (patterns: {ids}) into {folder}")
    note(RESTART)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from trayapp.plugins import installed, normalize, plugins_dir

    profile = _folder(args)
    folder = plugins_dir(profile.path)
    plugins = installed(folder)
    problems = _problems(profile) if plugins else {}
    if args.json:
        print_json(
            {
                "version": JSON_VERSION,
                "folder": str(folder),
                "plugins": [
                    {**p.to_json(), "problem": problems.get(normalize(p.name))} for p in plugins
                ],
            }
        )
        return EXIT_OK
    if not plugins:
        print(f"no plugins installed (folder: {folder})")
        return EXIT_OK
    rows = [("PLUGIN", "VERSION", "PATTERNS", "STATUS")]
    for p in plugins:
        ids = ", ".join(ep.split(" = ")[0] for ep in p.patterns)
        rows.append((p.name, p.version, ids, problems.get(normalize(p.name), "ok")))
    print_table(rows)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from trayapp.plugins import plugins_dir, remove

    profile = _folder(args)
    folder = plugins_dir(profile.path)
    gone = remove(folder, args.name)
    if args.json:
        print_json(
            {"version": JSON_VERSION, "removed": args.name, "libraries": list(gone.libraries)}
        )
        return EXIT_OK
    libraries = f" and the libraries installed for it ({', '.join(gone.libraries)})"
    print(
        f"removed {gone.name} {gone.version}{libraries if gone.libraries else ''}; charms made "
        "from its patterns stay and wait until it is back"
    )
    return EXIT_OK
