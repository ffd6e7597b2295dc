"""What packaging/linux/shrink_icu.py keeps of ICU's data archive.

The bundle test proves the cut-down archive works inside the frozen app (the self-test's
``icu`` check); these pin the rule itself, item by item, with real ICU 73 item names.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.packaging.helpers import REPO

# packaging/ is a folder of build scripts, not a package (and `packaging` is a PyPI name).
_spec = importlib.util.spec_from_file_location(
    "shrink_icu", REPO / "packaging" / "linux" / "shrink_icu.py"
)
assert _spec is not None and _spec.loader is not None
shrink_icu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shrink_icu)
keep = shrink_icu.keep


@pytest.mark.parametrize(
    "item",
    [
        "root.res",
        "res_index.res",
        "pool.res",
        "en.res",
        "en_GB.res",
        "supplementalData.res",
        "likelySubtags.res",
        "zoneinfo64.res",
        "metaZones.res",
        "cnvalias.icu",
        "nfkc.nrm",
        "uts46.nrm",
        "unames.icu",
        "coll/root.res",
        "coll/res_index.res",
        "coll/ucadata.icu",
        "zone/root.res",
        "zone/en.res",
        "zone/pool.res",
        "curr/en_US_POSIX.res",
        "newtree/anything.res",
    ],
)
def test_keeps_core_root_and_english_data(item: str) -> None:
    assert keep(item)


@pytest.mark.parametrize(
    "item",
    [
        "de.res",
        "zh_Hant_TW.res",
        "yue_Hans.res",
        "coll/de.res",
        "coll/zh.res",
        "zone/fr.res",
        "lang/ja.res",
        "unit/sr_Latn.res",
        "brkitr/root.res",
        "brkitr/word.brk",
        "translit/root.res",
        "rbnf/en.res",
        "ibm-943_P15A-2003.cnv",
        "gb18030.cnv",
    ],
)
def test_drops_other_locales_break_iterators_and_code_pages(item: str) -> None:
    assert not keep(item)
