"""``plait index rebuild`` through the real command: the lexical index refilled from Chroma."""

from __future__ import annotations

import json
import shutil

from tests.cli.conftest import assert_clean_error, plait


def test_index_rebuild_refills_the_lexical_index(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("Axolotls regrow their limbs after an injury.\n")
    (folder / "b.md").write_text("Basalt forms when lava cools quickly at the surface.\n")
    home = tmp_path / "home"
    assert plait(home, "ingest", str(folder), "--collection", "rocks").code == 0
    lexical = home / "chroma" / "plait" / "rocks.lexical"
    assert (lexical / "meta.json").is_file()  # the store's lexical index, beside its ingest record
    r = plait(home, "index", "rebuild", "rocks", "--json")
    assert r.code == 0, r.text
    got = json.loads(r.out)
    assert got["collection"] == "rocks" and got["lexical_chunks"] == got["chunks"] == 2
    shutil.rmtree(lexical)  # lost: rebuilt from Chroma by the command
    r = plait(home, "index", "rebuild", "rocks")
    assert r.code == 0 and "rebuilt the lexical index of 'rocks': 2 chunks" in r.out, r.text
    r = plait(home, "search", "lava cooling", "--collection", "rocks", "--kind", "bm25", "-k", "1")
    assert r.code == 0 and "b.md" in r.out and "Basalt" in r.out, r.text
    assert_clean_error(plait(home, "index", "rebuild", "rokcs"), "no collection 'rokcs'", "did you mean 'rocks'")
