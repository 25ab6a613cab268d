"""NAACCR dictionaries and NAACCR XML, from the registrar's side first: import a file from another
registry, see what was rejected and where, export it again in the version and record type asked for.
Then the item table and the value checks on their own."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from chartkeeper.registry import naaccr as N
from chartkeeper.registry.naaccr import (
    DataType,
    Level,
    NaaccrPatient,
    Padding,
    RecordType,
    Reject,
    check_value,
    dictionary,
    read,
    read_all,
    write,
)

ROOT = Path(__file__).resolve().parents[2]
NAACCR_DATA = ROOT.parent / "shared" / "data" / "naaccr"
SAMPLES = sorted(NAACCR_DATA.glob("samples/*-10.xml.gz")) + sorted(NAACCR_DATA.glob("samples/*-100.xml.gz"))
NO_DATA = f"NAACCR reference data not found at {NAACCR_DATA} (../shared/data beside the checkout)"
NS = "http://naaccr.org/naaccrxml"


@pytest.fixture(scope="module")
def xsd() -> etree.XMLSchema:
    path = NAACCR_DATA / "xsd" / "naaccr_data_1.8.xsd"
    if not path.exists():
        pytest.skip(NO_DATA)
    return etree.XMLSchema(etree.parse(str(path)))


def sample_ids(p: Path | None) -> str:
    return p.name.removeprefix("naaccr-xml-sample-").removesuffix(".xml.gz") if p else "no-data"


def doc(*patients: str, version: str = "250", record_type: str = "I", extra: str = "", root_items: str = "") -> bytes:
    """A NAACCR XML file of the given patients, one element a line, so line numbers are easy to count:
    line 1 is the declaration, line 2 NaaccrData, then root items, then the patients' lines."""
    head = (f'<?xml version="1.0"?>\n<NaaccrData xmlns="{NS}" baseDictionaryUri="http://naaccr.org/naaccrxml/'
            f'naaccr-dictionary-{version}.xml" recordType="{record_type}" specificationVersion="1.8"{extra}>\n')
    return (head + root_items + "".join(patients) + "</NaaccrData>\n").encode()


def patient(pid: str, *tumor_items: str, items: str = "") -> str:
    """A patient on 3 + len(tumor_items) lines: Patient, id item, Tumor with items, closings."""
    tumor = "".join(f"    {t}\n" for t in tumor_items)
    return (f'<Patient>\n  <Item naaccrId="patientIdNumber">{pid}</Item>{items}\n  <Tumor>\n{tumor}  </Tumor>\n'
            "</Patient>\n")


def line_of(data: bytes, marker: str) -> int:
    """The 1-based line of the first occurrence of ``marker``, counted in the text itself."""
    text = data.decode()
    return text[: text.index(marker)].count("\n") + 1


GOOD_TUMOR = ('<Item naaccrId="primarySite">C509</Item>', '<Item naaccrId="histologicTypeIcdO3">8500</Item>')


# --- import: what a registrar sees ---------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES or [None], ids=sample_ids)
def test_every_sample_file_validates_imports_without_rejects_and_round_trips(sample: Path | None, xsd, tmp_path) -> None:
    if sample is None:
        pytest.skip(NO_DATA)
    assert xsd.validate(etree.parse(gzip.open(sample))), xsd.error_log.last_error
    header, patients, rejects = read_all(sample)
    assert rejects == []
    assert header is not None and header.dictionary is not None
    expected_tumors = gzip.open(sample).read().count(b"<Tumor>")
    assert sum(len(p.tumors) for p in patients) == expected_tumors

    # Export in the file's own version, or the oldest shipped one for older files (v18-v22 samples).
    version = header.dictionary.read_as or header.version
    out = tmp_path / "export.xml"
    report = write(out, header, patients, version, header.record_type)
    assert xsd.validate(etree.parse(str(out))), xsd.error_log.last_error
    assert (report.patients, report.tumors, report.rejects) == (len(patients), expected_tumors, [])

    header2, again, rejects2 = read_all(out)
    assert rejects2 == []
    assert header2 is not None and (header2.version, header2.record_type) == (version, header.record_type)
    retired = header.dictionary.retired
    # Items NAACCR retired in version 23 are the only ones an older file loses, and the report counts each value.
    dropped = Counter(k for p in patients for t in p.tumors for k in t if k in retired)
    assert report.not_in_version == dropped
    assert not report.not_in_record_type
    assert [(p.items, [{k: v for k, v in t.items() if k not in retired} for t in p.tumors]) for p in patients] == \
        [(p.items, p.tumors) for p in again]


def test_bad_records_are_rejected_with_line_and_reason_and_good_ones_kept() -> None:
    data = doc(
        patient("00000001", *GOOD_TUMOR),
        patient("00000002", '<Item naaccrId="primarySiteTypo">C509</Item>'),        # unknown id
        patient("00000003", '<Item naaccrId="histologicTypeIcdO3">85000</Item>'),   # too long
        patient("00000004", '<Item naaccrId="behaviorCodeIcdO3">X</Item>'),         # a letter in a digits item
        patient("00000005", *GOOD_TUMOR),
    )
    reader = read(io.BytesIO(data))
    got = list(reader)
    patients = [x for x in got if isinstance(x, NaaccrPatient)]
    rejects = [x for x in got if isinstance(x, Reject)]
    assert [p.items["patientIdNumber"] for p in patients] == ["00000001", "00000005"]
    assert [(r.line, r.patient_index, r.item_id) for r in rejects] == [
        (line_of(data, "primarySiteTypo"), 2, "primarySiteTypo"),
        (line_of(data, ">85000<"), 3, "histologicTypeIcdO3"),
        (line_of(data, ">X<"), 4, "behaviorCodeIcdO3")]
    unknown, long_, letters = (r.reason for r in rejects)
    assert "primarySiteTypo is not in the NAACCR 250 dictionary" in unknown
    assert "histologicTypeIcdO3 (#522)" in long_ and "at most 4" in long_ and "shorten" in long_
    assert "behaviorCodeIcdO3 (#523)" in letters and "digit" in letters
    assert (reader.patients, reader.tumors, reader.rejected_patients, reader.complete) == (2, 2, 3, True)
    assert str(rejects[0]).startswith(f"line {line_of(data, 'primarySiteTypo')}, patient 2, item primarySiteTypo: ")


def test_malformed_xml_reports_the_line_and_keeps_the_patients_before_it() -> None:
    broken = '<Patient>\n  <Item naaccrId="patientIdNumber">00000003</Itm>\n</Patient>\n'  # mismatched end tag
    data = doc(patient("00000001", *GOOD_TUMOR), patient("00000002", *GOOD_TUMOR), broken,
               patient("00000004", *GOOD_TUMOR))
    reader = read(io.BytesIO(data))
    got = list(reader)
    assert [x.items["patientIdNumber"] for x in got if isinstance(x, NaaccrPatient)] == ["00000001", "00000002"]
    (reject,) = [x for x in got if isinstance(x, Reject)]
    line = line_of(data, "</Itm>")
    assert reject.line == line and reject.patient_index == 3
    assert f"not well-formed XML at line {line}" in reject.reason and "2 patients before it were read" in reject.reason
    assert reader.complete is False


def test_a_file_for_a_version_we_do_not_have_is_refused_whole_with_a_reason() -> None:
    header, patients, rejects = read_all(doc(patient("00000001", *GOOD_TUMOR), version="990"))
    assert patients == []
    (r,) = rejects
    assert r.line == 2 and r.patient_index is None
    assert "no NAACCR 990 dictionary" in r.reason and "260" in r.reason


def test_items_of_another_version_are_rejected_naming_the_version_they_belong_to() -> None:
    # 'sex' left the base dictionary in version 26: a file that says 260 but carries it was written for 25.
    data = doc(patient("00000001", *GOOD_TUMOR),
               patient("00000002", *GOOD_TUMOR, items='\n  <Item naaccrId="sex">2</Item>'), version="260")
    header, patients, rejects = read_all(data)
    assert [p.items["patientIdNumber"] for p in patients] == ["00000001"]
    (r,) = rejects
    assert (r.line, r.patient_index, r.item_id) == (line_of(data, '"sex"'), 2, "sex")
    assert "not in the NAACCR 260 dictionary" in r.reason and "250" in r.reason and "baseDictionaryUri" in r.reason


def test_structural_problems_wrong_level_duplicate_wrong_number_unexpected_element() -> None:
    data = doc(
        patient("00000001", '<Item naaccrId="sex">1</Item>'),                              # Patient item in a Tumor
        patient("00000002", *GOOD_TUMOR, '<Item naaccrId="primarySite">C500</Item>'),       # twice
        patient("00000003", '<Item naaccrId="primarySite" naaccrNum="401">C509</Item>'),    # wrong number
        patient("00000004", '<Diagnosis>C509</Diagnosis>'),                                  # not an Item
        patient("00000005", '<x:note xmlns:x="urn:example">kept out</x:note>', *GOOD_TUMOR),  # extension: skipped
    )
    _, patients, rejects = read_all(data)
    assert [p.items["patientIdNumber"] for p in patients] == ["00000005"]
    assert patients[0].tumors == [{"primarySite": "C509", "histologicTypeIcdO3": "8500"}]
    assert [(r.line, r.patient_index, r.item_id) for r in rejects] == [
        (line_of(data, '"sex"'), 1, "sex"), (line_of(data, "C500"), 2, "primarySite"),
        (line_of(data, '"401"'), 3, "primarySite"), (line_of(data, "<Diagnosis>"), 4, None)]
    assert "belongs inside a Patient element" in rejects[0].reason
    assert "appears twice" in rejects[1].reason
    assert "naaccrNum 401" in rejects[2].reason and "#400" in rejects[2].reason
    assert "not Diagnosis" in rejects[3].reason


def test_header_items_user_dictionary_and_gzip(tmp_path: Path) -> None:
    user = tmp_path / "user.xml"
    user.write_text(
        f'<?xml version="1.0"?>\n<NaaccrDictionary xmlns="{NS}" dictionaryUri="http://example.org/registry-x.xml" '
        'specificationVersion="1.8"><ItemDefs>'
        '<ItemDef naaccrId="regXFollowUpFlag" naaccrNum="9501" length="1" dataType="digits" '
        'parentXmlElement="Patient" recordTypes="A,M,C,I"/></ItemDefs></NaaccrDictionary>\n')
    udict = N.load_dictionary(user)
    data = doc(patient("00000001", *GOOD_TUMOR, items='\n  <Item naaccrId="regXFollowUpFlag">1</Item>'),
               extra=' userDictionaryUri="http://example.org/registry-x.xml"',
               root_items='<Item naaccrId="registryId">0000001234</Item>\n')
    gz = tmp_path / "in.xml.gz"
    gz.write_bytes(gzip.compress(data))

    # Without the registry's dictionary: told up front, and the patient using its item is held back.
    _, patients, rejects = read_all(gz)
    assert patients == [] and "user-defined dictionary http://example.org/registry-x.xml" in rejects[0].reason
    assert rejects[1].item_id == "regXFollowUpFlag"

    header, patients, rejects = read_all(gz, user_dictionaries=[udict])
    assert rejects == [] and header is not None
    assert header.items == {"registryId": "0000001234"}
    assert patients[0].items["regXFollowUpFlag"] == "1"

    out = tmp_path / "out.xml.gz"
    report = write(out, header, patients, "250", "I", user_dictionaries=[udict])
    assert report.patients == 1
    root = etree.parse(gzip.open(out)).getroot()
    assert root.get("userDictionaryUri") == "http://example.org/registry-x.xml"
    assert root[0].get("naaccrId") == "registryId"  # NaaccrData items come before the patients
    again = read_all(out, user_dictionaries=[udict])
    assert again[0] is not None and again[0].items == header.items and again[1] == patients


# --- export: version and record type ------------------------------------------------------------------------


def test_export_as_incidence_keeps_only_incidence_items_in_dictionary_order(xsd) -> None:
    src = NAACCR_DATA / "samples" / "naaccr-xml-sample-v250-abstract-10.xml.gz"
    header, patients, _ = read_all(src)
    buf = io.BytesIO()
    report = write(buf, header, patients, "250", RecordType.INCIDENCE)
    assert xsd.validate(etree.fromstring(buf.getvalue()))
    d = dictionary("250")
    written = [e.get("naaccrId") for e in etree.fromstring(buf.getvalue()).iter(f"{{{NS}}}Item")]
    assert written and all(RecordType.INCIDENCE in d.items[i].record_types for i in written)
    # Names are confidential: an incidence exchange leaves them out, and the report says how many values.
    assert report.not_in_record_type["nameLast"] == sum("nameLast" in p.items for p in patients) > 0
    # Within a patient, items follow the dictionary's order.
    order = list(d.items)
    first = etree.fromstring(buf.getvalue())[0]
    ids = [e.get("naaccrId") for e in first if e.tag == f"{{{NS}}}Item"]
    assert ids == sorted(ids, key=order.index)


def test_export_to_version_26_reports_the_items_it_no_longer_has(xsd) -> None:
    src = NAACCR_DATA / "samples" / "naaccr-xml-sample-v250-incidence-10.xml.gz"
    header, patients, _ = read_all(src)
    buf = io.BytesIO()
    report = write(buf, header, patients, "260", "I")
    assert xsd.validate(etree.fromstring(buf.getvalue()))
    assert report.not_in_version["sex"] == len(patients)
    assert etree.fromstring(buf.getvalue()).get("baseDictionaryUri").endswith("naaccr-dictionary-260.xml")


def test_export_refuses_values_that_do_not_fit_and_writes_the_rest() -> None:
    good = NaaccrPatient({"patientIdNumber": "00000001"}, [{"primarySite": "C509"}], 3)
    bad = NaaccrPatient({"patientIdNumber": "00000002"}, [{"primarySite": "C5099"}], 9)
    buf = io.BytesIO()
    report = write(buf, None, [good, bad], "260", "I")
    assert (report.patients, report.tumors) == (1, 1)
    (r,) = report.rejects
    assert (r.line, r.patient_index, r.item_id) == (9, 2, "primarySite") and "#400" in r.reason
    assert read_all(buf.getvalue())[1] == [good]


def test_export_escapes_markup_and_refuses_characters_xml_cannot_carry(xsd) -> None:
    tricky = NaaccrPatient({"patientIdNumber": "00000001", "nameLast": 'O<Neil & "Sons">', "nameFirst": "Zoë"},
                           [{"primarySite": "C509", "textRemarks": "line one\r\nline two & more"}], 3)
    control = NaaccrPatient({"patientIdNumber": "00000002", "nameLast": "Bad\x07Bell"}, [], 9)
    buf = io.BytesIO()
    report = write(buf, None, [tricky, control], "260", "A")
    assert xsd.validate(etree.fromstring(buf.getvalue()))
    assert read_all(buf.getvalue())[1] == [tricky]
    (r,) = report.rejects
    assert (r.patient_index, r.item_id) == (2, "nameLast") and "control character" in r.reason


def test_export_to_a_version_we_do_not_ship_is_refused() -> None:
    with pytest.raises(ValueError, match="writes NAACCR versions 230, 240, 250, 260"):
        write(io.BytesIO(), None, [], "180", "I")
    with pytest.raises(ValueError, match="A \\(abstract\\), M \\(modified\\), C \\(confidential\\) or I"):
        write(io.BytesIO(), None, [], "260", "X")


def test_reader_clears_each_patient_so_memory_does_not_grow() -> None:
    # Each patient is emptied and detached once read; only what the parser has read ahead stays in the tree.
    data = doc(*(patient(f"{i:08d}", *GOOD_TUMOR) for i in range(1, 3001)))
    reader = read(io.BytesIO(data))
    held = []
    for p in reader:
        assert isinstance(p, NaaccrPatient)
        held.append(len(reader._root))
    assert len(held) == 3000 and max(held) < 300


# --- the item table -----------------------------------------------------------------------------------------


def test_dictionary_items_have_number_length_type_level_and_record_types() -> None:
    d = dictionary("25")
    assert d.version == "250" and d.uri.endswith("naaccr-dictionary-250.xml")
    site = d.items["primarySite"]
    assert (site.number, site.length, site.parent, site.data_type) == (400, 4, Level.TUMOR, DataType.TEXT)
    age = d.items["ageAtDiagnosis"]
    assert (age.data_type, age.padding, age.length) == (DataType.DIGITS, Padding.LEFT_ZERO, 3)
    assert d.items["nameLast"].record_types == {RecordType.ABSTRACT, RecordType.MODIFIED, RecordType.CONFIDENTIAL}
    assert d.items["registryId"].parent is Level.NAACCR_DATA
    assert d.by_number[400] is site
    assert "sex" in d.items and "sex" not in dictionary("260").items
    assert len(d.for_record_type(RecordType.INCIDENCE)) < len(d.for_record_type(RecordType.ABSTRACT)) == len(d.items)


def test_older_versions_are_read_with_the_oldest_table_plus_retired_items() -> None:
    old = dictionary("180")
    assert old.read_as == "230" and "seerRecordNumber" in old.items and "seerRecordNumber" in old.retired
    assert "seerRecordNumber" not in dictionary("230").items
    with pytest.raises(ValueError, match="no NAACCR 270 dictionary"):
        dictionary("270")


def test_check_value_names_the_item_and_the_fix_without_quoting_the_value() -> None:
    d = dictionary("260")
    items = d.items
    assert check_value(items["primarySite"], "C509") is None
    cases = {
        ("primarySite", "C5091"): "at most 4 characters",
        ("ageAtDiagnosis", "65"): "pad it with zeros on the left to 3 digits",
        ("ageAtDiagnosis", "6a5"): "exactly 3 digits",
        ("addrAtDxState", "pa"): "write it in capitals",
        ("addrAtDxState", "P1"): "capital letter",
        ("dateOfBirth", "20230231"): "does not exist on the calendar",
        ("dateOfBirth", "2023-01-01"): "YYYYMMDD",
        ("dateOfBirth", "17991231"): "1800-2099",
    }
    for (nid, value), phrase in cases.items():
        msg = check_value(items[nid], value)
        assert msg is not None and phrase in msg, (nid, value, msg)
        assert msg.startswith(f"Item {nid} (#{items[nid].number})") and value not in msg
    assert check_value(items["dateOfBirth"], "2023") is None and check_value(items["dateOfBirth"], "202302") is None
    numeric = next(i for i in items.values() if i.data_type is DataType.NUMERIC)
    assert check_value(numeric, "1" * numeric.length) is None
    assert "number" in (check_value(numeric, "1,5") or "")


def test_shipped_tables_are_what_the_generator_makes_from_the_dictionaries() -> None:
    src = NAACCR_DATA / "dictionaries"
    if not src.is_dir():
        pytest.skip(NO_DATA)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_naaccr_items.py"), str(src), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # and each table says what its dictionary says, item for item
    for path in sorted(src.glob("naaccr-dictionary-*.xml")):
        base = N.load_dictionary(path)
        shipped = dictionary(base.version or "")
        assert list(shipped.items) == list(base.items) and shipped.items == base.items
        table = json.loads((ROOT / "src/chartkeeper/registry/naaccr_items" / f"naaccr-items-{base.version}.json").read_text())
        assert table["dictionaryUri"] == base.uri
