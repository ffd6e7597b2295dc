"""Replace the bundle's 31 MB ICU data library with one holding only what Qt uses here.

Qt Core (PySide6's wheel) links ICU, and ICU's data library (``libicudata.so.NN``) is a single
symbol, ``icudtNN_dat``: an ICU "common data" archive of ~3900 items, most of them locale
data for ~800 locales (names of languages, currencies, units, time zones...), break
iterators, transliterators and legacy code-page converters. Qt on Linux uses ICU for
collation (QCollator, e.g. QFileSystemModel's sorting), case mapping and, for names it does not
know itself, text codecs; its own CLDR tables do locale formatting. The app's text is English.

So the archive keeps: the root collation (Unicode's default order), the root and English
locale data, ICU's core tables (normalisation, property names, time-zone rules,
supplemental data, converter aliases). It drops: the other locales' display names, break
iterators (Qt uses its own), transliterators, number spellouts, and the code-page converters
(.cnv: a QStringDecoder for e.g. Shift_JIS is then invalid; the app decodes text in Python).
That is ~3.7 MB instead of ~32 MB.

The archive is edited with ICU's own ``icupkg`` (Debian: icu-devtools; it reads any newer
ICU's archives, the format is stable) and linked back into a library with the same soname and
symbol with ``gcc`` and an ``.incbin`` (ICU's genccode does the same, via a generated source).
The result is checked before it replaces the original; build.sh's self-test of the frozen app
then exercises it (bundle_selftest.py's ``icu`` check).

    python packaging/linux/shrink_icu.py APP_DIR      prints "before after" sizes in bytes
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_LIBRARY = re.compile(r"libicudata\.so\.(\d+)$")
# Locale bundles at the archive's top level and in its sub-trees are named by locale id.
_LOCALE_ID = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]+)*\.res$")
# Sub-trees of per-locale display names: only their root, index, pool and English stay.
_NAME_TREES = {"curr", "lang", "region", "unit", "zone"}
# Collation keeps the root order (Unicode's default, fine for English and most languages) and
# drops the per-language tailorings: the app sorts nothing with QCollator.
# Sub-trees Qt does not use at all.
_UNUSED_TREES = {"brkitr", "rbnf", "translit"}


class ShrinkError(Exception):
    pass


def keep(item: str) -> bool:
    """Whether an archive item (e.g. ``coll/de.res``, ``ibm-943_P15A-2003.cnv``) stays."""
    tree, _, name = item.rpartition("/")
    if item.endswith(".cnv"):
        return False
    if tree in _UNUSED_TREES:
        return False
    if tree == "coll":
        return name in {"root.res", "res_index.res", "ucadata.icu"} or name.startswith("en")
    if tree and tree not in _NAME_TREES:
        return True  # a sub-tree this ICU version added: keep rather than guess
    if name in {"root.res", "res_index.res", "pool.res"}:
        return True
    if _LOCALE_ID.fullmatch(name):
        return name == "en.res" or name.startswith("en_")
    return not tree  # top-level core data (.icu, .nrm, .spp, supplemental .res)


def _run(*args: str) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ShrinkError(f"{args[0]} is needed (Debian: icu-devtools, gcc, binutils)") from exc
    if result.returncode != 0:
        raise ShrinkError(f"{' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def _symbol(library: Path, major: str) -> tuple[int, int]:
    """(address, size) of ``icudtNN_dat``, the library's one exported symbol."""
    for line in _run("nm", "-D", "-S", "--defined-only", str(library)).splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == f"icudt{major}_dat":
            return int(fields[0], 16), int(fields[1], 16)
    raise ShrinkError(f"{library.name} does not export icudt{major}_dat")


def _rodata(library: Path) -> tuple[int, int]:
    """(address, size) of the library's .rodata section."""
    for line in _run("readelf", "-W", "-S", str(library)).splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] == ".rodata":
            return int(fields[3], 16), int(fields[5], 16)
    raise ShrinkError(f"{library.name} has no .rodata section")


def shrink(library: Path) -> tuple[int, int]:
    match = _LIBRARY.search(library.name)
    if not match:
        raise ShrinkError(f"{library} is not an ICU data library")
    major = match.group(1)
    before = library.stat().st_size
    address, size = _symbol(library, major)
    # The archive is all of .rodata (how ICU builds it); anything else would be a surprise worth
    # stopping for rather than cutting bytes out at a guessed offset.
    if _rodata(library) != (address, size):
        raise ShrinkError(f"{library.name}: icudt{major}_dat is not the whole .rodata section")
    with tempfile.TemporaryDirectory(prefix="shrink-icu-") as tmp:
        work = Path(tmp)
        # icupkg names the items after the output file, so both files carry ICU's own name.
        name = f"icudt{major}l.dat"
        full, small = work / "in" / name, work / "out" / name
        full.parent.mkdir()
        small.parent.mkdir()
        _run("objcopy", "-O", "binary", "--only-section=.rodata", str(library), str(full))
        if full.stat().st_size != size:
            raise ShrinkError(f"{library.name}: extracted {full.stat().st_size} bytes, not {size}")
        items = _run("icupkg", "-l", str(full)).split()
        drop = [item for item in items if not keep(item)]
        if not drop or len(drop) == len(items):
            raise ShrinkError(f"{library.name}: unexpected contents ({len(items)} items)")
        (work / "drop.txt").write_text("\n".join(drop) + "\n")
        _run("icupkg", "-r", str(work / "drop.txt"), str(full), str(small))
        kept = set(_run("icupkg", "-l", str(small)).split())
        if kept != {item for item in items if keep(item)}:
            raise ShrinkError(f"{library.name}: icupkg wrote a different archive than asked")
        source = work / "icudata.S"
        source.write_text(
            "\t.section .rodata\n"
            f"\t.globl icudt{major}_dat\n"
            f"\t.type icudt{major}_dat, @object\n"
            "\t.balign 16\n"
            f"icudt{major}_dat:\n"
            f'\t.incbin "{small}"\n'
            f"\t.size icudt{major}_dat, . - icudt{major}_dat\n"
            '\t.section .note.GNU-stack,"",@progbits\n'
        )
        built = work / library.name
        _run(
            "gcc", "-shared", "-nostdlib", f"-Wl,-soname,{library.name}",
            "-Wl,-z,noexecstack", "-o", str(built), str(source),
        )  # fmt: skip
        _symbol(built, major)
        shutil.copymode(library, built)
        built.replace(library)
    return before, library.stat().st_size


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    libraries = sorted(Path(args[0]).rglob("libicudata.so.*"))
    libraries = [lib for lib in libraries if _LIBRARY.search(lib.name) and not lib.is_symlink()]
    if len(libraries) != 1:
        print(f"shrink_icu: expected one libicudata.so.NN, found {libraries}", file=sys.stderr)
        return 1
    try:
        before, after = shrink(libraries[0])
    except ShrinkError as exc:
        print(f"shrink_icu: {exc}", file=sys.stderr)
        return 1
    print(before, after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
