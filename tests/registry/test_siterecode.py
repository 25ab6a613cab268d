"""SEER Site Recode 2023: what a registrar sees when a tumour is grouped for a report, then the
generated table checked against every row of the public CSV (skipped when ../shared/data is absent)."""

from __future__ import annotations

import csv
import importlib.util
import json
from importlib import resources
from pathlib import Path

import pytest

from chartkeeper.coding.codes import CodeFormatError
from chartkeeper.registry.codes import ICDO3Behavior, ICDO3Histology, ICDO3Topography
from chartkeeper.registry.siterecode import SiteGroup, site_group, site_groups

ROOT = Path(__file__).resolve().parents[2]


def test_known_tumours_fall_in_their_groups() -> None:
    # A registrar's everyday cases, typed values and plain text alike.
    assert site_group(ICDO3Topography("C50.9"), ICDO3Histology("8500"), ICDO3Behavior("3")) == SiteGroup("39", "Breast")
    # Sigmoid colon: the 2023 (non-expanded) recode has no sigmoid line; it is counted in colon and rectum.
    assert site_group("C18.7", "8140", "3") == SiteGroup("20", "Colon and Rectum (excluding Appendix)")
    assert site_group("C34.1", "8046", "3") == SiteGroup("30", "Lung and Bronchus")
    # Lymphoma goes by histology wherever it sits: DLBCL of the stomach is non-Hodgkin lymphoma, not stomach.
    assert site_group("C16.9", "9680", "3") == SiteGroup("70", "Non-Hodgkin Lymphomas")
    assert site_group("C77.3", "9680", "3").name == "Non-Hodgkin Lymphomas"  # type: ignore[union-attr]
    assert site_group("C44.5", "8720", "3") == SiteGroup("37", "Melanoma of the Skin")
    assert site_group("C44.5", "8832", "3") == SiteGroup("38", "Other Non-Epithelial Skin")
    assert site_group("C38.4", "9050", "3") == SiteGroup("77", "Mesothelioma")
    assert site_group("C80.9", "8000", "3") == SiteGroup("79", "Miscellaneous Neoplasms")


def test_in_situ_is_grouped_benign_only_in_the_brain_group() -> None:
    assert site_group("C50.9", "8500", "2") == SiteGroup("39", "Breast")
    assert site_group("C50.9", "8500", "0") is None
    assert site_group("C56.9", "8442", "1") is None
    # Benign and borderline brain, CNS and intracranial gland tumours are reportable and have their own group.
    assert site_group("C71.9", "9380", "1") == SiteGroup("81", "Brain, CNS Other and Intracranial Gland (Benign and Borderline)")
    assert site_group("C70.0", "9530", "0").code == "81"  # type: ignore[union-attr]


def test_histology_9727_moved_from_precursor_lymphoid_to_nhl_in_2010() -> None:
    assert site_group("C42.1", "9727", "3", dx_year=2009).name == "Precursor Lymphoid Neoplasms"  # type: ignore[union-attr]
    assert site_group("C42.1", "9727", "3", dx_year=2010).name == "Non-Hodgkin Lymphomas"  # type: ignore[union-attr]
    assert site_group("C42.1", "9727", "3").name == "Non-Hodgkin Lymphomas"  # type: ignore[union-attr]
    # Groups without a year limit are the same in any year.
    assert site_group("C61.9", "8140", "3", dx_year=1995) == site_group("C61.9", "8140", "3", dx_year=2024)


def test_malformed_codes_are_refused_with_a_sentence() -> None:
    with pytest.raises(CodeFormatError, match="primary site"):
        site_group("50.9", "8500", "3")
    with pytest.raises(CodeFormatError, match="histology"):
        site_group("C50.9", "850", "3")
    with pytest.raises(CodeFormatError, match="behavior"):
        site_group("C50.9", "8500", "6")


def test_site_groups_lists_each_group_once_in_table_order() -> None:
    groups = site_groups()
    codes = [g.code for g in groups]
    assert len(codes) == len(set(codes)) == 80
    assert codes == sorted(codes)
    assert groups[0] == SiteGroup("01", "Lip")


def _expand(text: str, *, topography: bool) -> list[int]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        hi = hi or lo
        if topography:
            lo, hi = lo[1:], hi[1:]
        out.extend(range(int(lo), int(hi) + 1))
    return out


def _csv_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "seer" / "seer-site-recode-2023.csv").open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["Recode"]]


def test_every_csv_rule_is_honoured(shared_data: Path) -> None:
    """For each row of the public table, every listed site with a histology that row admits lands in
    that row's group (for the row's own year range), and an excluded histology does not."""
    checked = 0
    for row in _csv_rows(shared_data):
        year = int(row["DX Year Min"] or row["DX Year Max"] or 2015)
        hist_out = set(_expand(row["Hist OUT"], topography=False))
        if row["Hist IN"].strip(" ,"):
            hists = _expand(row["Hist IN"], topography=False)
        else:
            hists = [h for h in (8000, 8140, 8070, 8500, 8890) if h not in hist_out]
        sites = _expand(row["Sites IN"], topography=True)
        for site in sites[:: max(1, len(sites) // 12)]:
            for hist in hists:
                for beh in row["Beh IN"].split(","):
                    got = site_group(f"C{site:03d}", str(hist), beh, dx_year=year)
                    assert got is not None and got.code == row["Recode"], (row["Name"], site, hist, beh, year, got)
                    checked += 1
            for hist in sorted(hist_out)[:: max(1, len(hist_out) // 20)]:
                got = site_group(f"C{site:03d}", str(hist), "3", dx_year=year)
                assert got is None or got.code != row["Recode"], (row["Name"], site, hist)
    assert checked > 1000


def test_packaged_table_is_what_the_generator_makes_from_the_csv(shared_data: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_seer_site_recode", ROOT / "scripts" / "gen_seer_site_recode.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    built = gen.build(shared_data / "seer" / "seer-site-recode-2023.csv")
    packaged = json.loads(resources.files("chartkeeper.registry").joinpath("data/seer_site_recode_2023.json").read_text())
    assert packaged == built
