"""Writes the labelled encounters for benchmarks/cac.py: dev.jsonl (the lexicon may be tuned on it) and
eval.jsonl (never used for tuning). See README.md beside this file.

Each encounter is assembled from clinical facts, each written in one of several phrasings a physician
might use; the gold codes of a fact are assigned from the ICD-10-CM/PCS guidelines when the fact is
written, not by running the coder. Phrasings marked "!" appear only in the evaluation set, so part of
the evaluation measures wording the lexicon was never adjusted to.

    .venv/bin/python benchmarks/data/cac/make_notes.py
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A fact: phrasings (text, codes); "!" first = evaluation only. Codes are what a coder assigns.
Phr = tuple[str, tuple[str, ...]]


@dataclass
class Fact:
    key: str
    phrasings: list[Phr]
    tags: set[str] = field(default_factory=set)  # heart, ckd, htn, dm, ckdstage ...


def F(key: str, *phr: Phr, tags: tuple[str, ...] = ()) -> Fact:
    return Fact(key, list(phr), set(tags))


PRINCIPAL = [
    (
        F(
            "chf",
            ("Acute on chronic systolic congestive heart failure", ("I50.23",)),
            ("Acute on chronic HFrEF", ("I50.23",)),
            ("!Decompensated chronic systolic heart failure", ("I50.23",)),
            ("Acute on chronic diastolic heart failure", ("I50.33",)),
            ("!HFpEF exacerbation", ("I50.33",)),
            ("Acute systolic heart failure", ("I50.21",)),
            tags=("heart",),
        ),
        "shortness of breath and leg swelling",
        "He was diuresed with IV furosemide with improvement in his symptoms.",
        [],
    ),
    (
        F(
            "pna",
            ("Community-acquired pneumonia", ("J18.9",)),
            ("Right lower lobe pneumonia", ("J18.9",)),
            ("!Pneumonia due to Streptococcus pneumoniae", ("J13",)),
            ("Aspiration pneumonia", ("J69.0",)),
            ("!Multifocal pneumonia", ("J18.9",)),
            ("Probable community-acquired pneumonia", ("J18.9",)),
            ("!Suspected bacterial pneumonia", ("J15.9",)),
        ),
        "cough and fever",
        "He was treated with ceftriaxone and azithromycin and defervesced.",
        [],
    ),
    (
        F(
            "copd",
            ("COPD with acute exacerbation", ("J44.1",)),
            ("!Acute exacerbation of chronic obstructive pulmonary disease", ("J44.1",)),
            ("AECOPD", ("J44.1",)),
        ),
        "worsening shortness of breath and wheezing",
        "She received nebulized bronchodilators and a prednisone burst.",
        [],
    ),
    (
        F(
            "sepsis",
            ("Sepsis due to urinary tract infection", ("A41.9", "N39.0")),
            ("!Sepsis secondary to E. coli urinary tract infection", ("A41.51", "N39.0", "B96.20")),
            ("Severe sepsis due to community-acquired pneumonia", ("A41.9", "R65.20", "J18.9")),
        ),
        "fever and confusion",
        "Blood and urine cultures were drawn and IV antibiotics were started with fluid resuscitation.",
        [],
    ),
    (
        F(
            "nstemi",
            ("NSTEMI", ("I21.4",)),
            ("Non-ST elevation myocardial infarction", ("I21.4",)),
            ("!Acute inferior STEMI", ("I21.19",)),
        ),
        "substernal chest pain",
        "Troponin peaked at 4.2. Cardiology was consulted.",
        [("Left heart catheterization with drug-eluting stent to the RCA", ("4A023N7", "027034Z"))],
    ),
    (
        F(
            "stroke",
            ("Acute ischemic stroke, left MCA territory", ("I63.512",)),
            ("!Left middle cerebral artery stroke", ("I63.512",)),
            ("Acute ischemic stroke", ("I63.9",)),
        ),
        "right-sided weakness and slurred speech",
        "MRI confirmed an acute infarct. He was started on aspirin and atorvastatin.",
        [],
    ),
    (
        F(
            "hipfx",
            ("Closed fracture of the right femoral neck", ("S72.001A", "W19.XXXA")),
            ("Left femoral neck fracture", ("S72.002A", "W19.XXXA")),
        ),
        "hip pain after a mechanical fall",
        "Orthopedics took her to the operating room on hospital day 2.",
        ["hemi"],
    ),
    (
        F("appy", ("Acute appendicitis", ("K35.80",)), ("!Perforated appendicitis", ("K35.32",))),
        "right lower quadrant pain and nausea",
        "He was taken to the operating room the night of admission.",
        [("Laparoscopic appendectomy", ("0DTJ4ZZ",))],
    ),
    (
        F("chole", ("Acute calculous cholecystitis", ("K80.00",)), ("!Acute cholecystitis with cholelithiasis", ("K80.00",))),
        "right upper quadrant pain and vomiting",
        "Ultrasound showed gallstones with wall thickening.",
        [("Laparoscopic cholecystectomy", ("0FT44ZZ",))],
    ),
    (
        F("gib", ("Upper GI bleed", ("K92.2",)), ("!Acute upper gastrointestinal hemorrhage", ("K92.2",))),
        "black tarry stools and lightheadedness",
        "Hemoglobin dropped to 6.8. GI performed an EGD.",
        [("EGD", ("0DJ08ZZ",)), ("Transfusion of 2 units packed red blood cells", ("30233N1",))],
    ),
    (
        F("aki", ("Acute kidney injury", ("N17.9",)), ("!Acute renal failure", ("N17.9",))),
        "poor oral intake and weakness",
        "Creatinine improved from 3.1 to 1.4 with IV fluids.",
        [],
    ),
    (
        F("dka", ("Diabetic ketoacidosis in type 1 diabetes mellitus", ("E10.10",)), ("!DKA, type 1 diabetes", ("E10.10",))),
        "nausea, vomiting and abdominal pain",
        "She was treated with an insulin infusion per DKA protocol.",
        [],
    ),
    (
        F(
            "oa",
            ("Primary osteoarthritis of the left knee", ("M17.12",)),
            ("Primary osteoarthritis of the right knee", ("M17.11",)),
        ),
        "chronic knee pain, admitted for elective surgery",
        "Postoperative course was uncomplicated. Physical therapy started on day 1.",
        ["tka"],
    ),
    (
        F("cellulitis", ("Cellulitis of the left lower extremity", ("L03.116",)), ("!Right leg cellulitis", ("L03.115",))),
        "redness and swelling of the leg",
        "He was treated with IV cefazolin with improvement of the erythema.",
        [],
    ),
    (
        F("pe", ("Acute pulmonary embolism", ("I26.99",)), ("!Saddle pulmonary embolus", ("I26.92",))),
        "pleuritic chest pain and shortness of breath",
        "CT angiogram confirmed the diagnosis. She was started on heparin.",
        [],
    ),
    (
        F(
            "afib",
            ("Atrial fibrillation with rapid ventricular response", ("I48.91",)),
            ("!Paroxysmal atrial fibrillation with RVR", ("I48.0",)),
        ),
        "palpitations",
        "Rate was controlled with diltiazem. Apixaban was started.",
        [],
    ),
    (
        F(
            "resp",
            ("Acute hypoxic respiratory failure due to pneumonia", ("J96.01", "J18.9")),
            ("!Acute hypoxemic respiratory failure secondary to multifocal pneumonia", ("J96.01", "J18.9")),
        ),
        "severe shortness of breath",
        "He was intubated in the ICU and required mechanical ventilation for 4 days.",
        [("__vent__", ("0BH17EZ", "5A1945Z"))],
    ),
    (
        F("sbo", ("Partial small bowel obstruction", ("K56.600",)), ("!Adhesive small bowel obstruction", ("K56.50",))),
        "abdominal distension and vomiting",
        "He was managed with bowel rest and nasogastric decompression.",
        [],
    ),
    (
        F("panc", ("Acute gallstone pancreatitis", ("K85.10",)), ("!Acute pancreatitis, alcohol-induced", ("K85.20",))),
        "epigastric pain radiating to the back",
        "Lipase was 2,400. He was treated with fluids and pain control.",
        [],
    ),
    (
        F("divert", ("Sigmoid diverticulitis", ("K57.32",)), ("!Acute diverticulitis of the sigmoid colon", ("K57.32",))),
        "left lower quadrant pain",
        "CT showed uncomplicated sigmoid diverticulitis. He improved on antibiotics.",
        [],
    ),
]

SECONDARY = [
    F("htn", ("Hypertension", ("I10",)), ("Essential hypertension", ("I10",)), ("HTN", ("I10",)), tags=("htn",)),
    F(
        "dm2",
        ("Type 2 diabetes mellitus", ("E11.9",)),
        ("DM2", ("E11.9",)),
        ("!Diabetes mellitus type 2, diet-controlled", ("E11.9",)),
        tags=("dm",),
    ),
    F(
        "dmneuro",
        ("Type 2 diabetes with peripheral neuropathy", ("E11.42",)),
        ("!Diabetic peripheral neuropathy", ("E11.42",)),
        tags=("dm",),
    ),
    F(
        "dmckd",
        ("Type 2 diabetes mellitus with stage 3a chronic kidney disease", ("E11.22", "N18.31")),
        ("!DM2 with CKD stage 3b", ("E11.22", "N18.32")),
        tags=("dm", "ckd"),
    ),
    F("ckd", ("Chronic kidney disease stage 4", ("N18.4",)), ("CKD stage 3b", ("N18.32",)), tags=("ckd",)),
    F("hld", ("Hyperlipidemia", ("E78.5",)), ("HLD", ("E78.5",)), ("!Dyslipidemia", ("E78.5",))),
    F("cad", ("Coronary artery disease", ("I25.10",)), ("CAD", ("I25.10",))),
    F(
        "hypothyroid",
        ("Hypothyroidism", ("E03.9",)),
    ),
    F("gerd", ("GERD", ("K21.9",)), ("!Gastroesophageal reflux disease", ("K21.9",))),
    F("depression", ("Depression", ("F32.A",)), ("!Major depressive disorder", ("F32.9",))),
    F("obesity", ("Obesity", ("E66.9",)), ("Morbid obesity", ("E66.01",))),
    F("afibchronic", ("Paroxysmal atrial fibrillation", ("I48.0",)), ("!Permanent atrial fibrillation", ("I48.21",))),
    F(
        "ida",
        ("Iron deficiency anemia", ("D50.9",)),
    ),
    F("osa", ("Obstructive sleep apnea", ("G47.33",)), ("OSA on CPAP", ("G47.33",))),
    F("bph", ("BPH", ("N40.0",)), ("!Benign prostatic hyperplasia", ("N40.0",))),
    F(
        "hypok",
        ("Hypokalemia", ("E87.6",)),
    ),
]

HISTORY = [
    ("History of colon cancer, status post hemicolectomy in 2016.", ("Z85.038",)),
    ("History of breast cancer, status post left mastectomy.", ("Z85.3", "Z90.12")),
    ("!Remote history of DVT, completed anticoagulation.", ("Z86.718",)),
    ("History of stroke without residual deficits.", ("Z86.73",)),
    ("Prior MI in 2012.", ("I25.2",)),
    ("!Personal history of prostate cancer treated with radiation.", ("Z85.46",)),
    ("Status post CABG in 2015.", ("Z95.1",)),
]

FAMILY = [
    ("Father with colon cancer.", ("Z80.0",)),
    ("Mother had breast cancer.", ("Z80.3",)),
    ("Family history of diabetes.", ("Z83.3",)),
    ("!Brother with coronary artery disease.", ("Z82.49",)),
    ("Noncontributory.", ()),
    ("Noncontributory.", ()),
]

SOCIAL = [
    ("Current smoker, 1 pack per day.", ("F17.210",)),
    ("Former smoker, quit in 2010.", ("Z87.891",)),
    ("Never smoker. Drinks alcohol socially.", ()),
    ("Denies tobacco or alcohol use.", ()),
]

NEGATIVES = [
    "He denies chest pain, fever or chills.",
    "She denies fever, cough or dysuria.",
    "No nausea, vomiting or diarrhea.",
    "!Negative for chest pain or palpitations.",
    "!There is no evidence of pneumonia on the chest film.",
]

NAMES = [
    "Garcia",
    "Nguyen",
    "Okafor",
    "Schmidt",
    "Patel",
    "Kowalski",
    "Haddad",
    "Sato",
    "Brennan",
    "Moreau",
    "Lindqvist",
    "Abara",
]
DOCTORS = ["Dr. Ellis", "Dr. Mensah", "Dr. Park", "Dr. Varga", "Dr. Quint", "Dr. Rahman"]


def pick(rng: random.Random, items: list, evaluation: bool):  # type: ignore[no-untyped-def]
    usable = [x for x in items if evaluation or not str(x[0] if isinstance(x, tuple) else x).startswith("!")]
    return rng.choice(usable)


def clean(s: str) -> str:
    return s[1:] if s.startswith("!") else s


def _htn_codes(gold: set[str], tags: set[str]) -> None:
    """Hypertension with heart failure and/or CKD: the I11/I12/I13 combination (guideline I.C.9.a)."""
    if "htn" not in tags:
        return
    heart, ckd = "heart" in tags, "ckd" in tags
    stage5 = bool(gold & {"N18.5", "N18.6"})
    if heart or ckd:
        gold.discard("I10")
        gold.add(
            "I13.0"
            if heart and ckd and not stage5
            else "I13.2"
            if heart and ckd
            else "I11.0"
            if heart
            else "I12.0"
            if stage5
            else "I12.9"
        )


def _dm_codes(gold: set[str], tags: set[str]) -> None:
    """Diabetes and CKD are linked by the 'with' convention; E11.9 goes when a complication is coded."""
    if "dm" in tags and "ckd" in tags:
        gold.add("E11.22")
    if gold & {"E11.22", "E11.42", "E11.65"}:
        gold.discard("E11.9")


def inpatient(rng: random.Random, n: int, evaluation: bool) -> dict:
    age = rng.randint(45, 89)
    sex = rng.choice(["man", "woman"])
    fact, cc, course, procs = rng.choice(PRINCIPAL)
    text, codes = pick(rng, fact.phrasings, evaluation)
    gold: set[str] = set(codes)
    tags = set(fact.tags)
    principal = codes[0]
    secondaries = rng.sample(SECONDARY, rng.randint(1, 4))
    sec_lines = []
    for s in secondaries:
        st, sc = pick(rng, s.phrasings, evaluation)
        if s.key == "dm2" and any(x.key in ("dmneuro", "dmckd") for x in secondaries):
            continue
        if s.key == "ckd" and any(x.key == "dmckd" for x in secondaries):
            continue
        if s.key == "afibchronic" and fact.key == "afib":
            continue
        if fact.key == "dka" and "dm" in s.tags:
            continue  # a type 1 diabetic is not also listed with type 2 diabetes
        sec_lines.append(clean(st))
        gold.update(sc)
        tags |= s.tags
    uncertain_word = clean(text).split()[0].lower() in ("probable", "suspected")
    _htn_codes(gold, tags)
    _dm_codes(gold, tags)
    if "htn" in tags and "heart" in tags:
        principal = "I11.0" if "ckd" not in tags else ("I13.0" if principal != "I13.2" else principal)
    if fact.key == "sepsis":
        principal = codes[0]
    docs = []
    hist_line, hist_codes = pick(rng, HISTORY, evaluation) if rng.random() < 0.5 else ("None.", ())
    fam_line, fam_codes = pick(rng, FAMILY, evaluation)
    soc_line, soc_codes = pick(rng, SOCIAL, evaluation)
    neg = clean(pick(rng, NEGATIVES, evaluation))
    gold.update(hist_codes)
    gold.update(fam_codes)
    gold.update(soc_codes)
    name = rng.choice(NAMES)
    doc = rng.choice(DOCTORS)
    proc_lines: list[str] = []
    side = "left" if "left" in clean(text).lower() else "right"
    for p in procs:
        if p == "hemi":
            proc_lines.append(f"{side.capitalize()} hip hemiarthroplasty")
            gold.add("0SRS0J9" if side == "left" else "0SRR0J9")
        elif p == "tka":
            proc_lines.append(f"{side.capitalize()} total knee arthroplasty")
            gold.add("0SRD0J9" if side == "left" else "0SRC0J9")
        elif isinstance(p, tuple) and p[0] == "__vent__":
            gold.update(p[1])
        else:
            proc_lines.append(p[0])
            gold.update(p[1])
    dx_lines = [f"1. {clean(text)}"] + [f"{i}. {s}" for i, s in enumerate(sec_lines, 2)]
    pmh = ", ".join(sec_lines) if sec_lines else "None"
    style = rng.random()
    if style < 0.5:
        ds = (
            f"DISCHARGE SUMMARY\n\nPatient: {name}    Admission date: 2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}    Attending: {doc}\n\n"  # noqa: E501
            f"REASON FOR ADMISSION\n{age}-year-old {sex} admitted with {cc}.\n\n"
            f"DISCHARGE DIAGNOSES\n" + "\n".join(dx_lines) + "\n\n"
            "PROCEDURES\n" + ("\n".join(f"- {p}" for p in proc_lines) if proc_lines else "None.") + "\n\n"
            f"HOSPITAL COURSE\n{course} {neg}\n\n"
            f"PAST MEDICAL HISTORY\n{pmh}. {hist_line}\n\n"
            f"SOCIAL HISTORY\n{soc_line}\n\nFAMILY HISTORY\n{fam_line}\n\n"
            f"DISCHARGE MEDICATIONS\nMetoprolol, atorvastatin, aspirin.\n\n"
            f"DISCHARGE INSTRUCTIONS\nReturn to the emergency department if chest pain, fever or shortness of breath.\n\n"
            f"Electronically signed by {doc}."
        )
    else:
        ds = (
            f"Discharge Summary\n{name}, {age} y/o {sex}. Attending: {doc}\n\n"
            f"Principal diagnosis: {clean(text)}\n"
            f"Secondary diagnoses:\n" + "\n".join(f"- {s}" for s in sec_lines) + "\n\n"
            "Procedures: " + ("; ".join(proc_lines) if proc_lines else "none") + "\n\n"
            f"Brief hospital course:\nThe patient presented with {cc}. {course} {neg}\n\n"
            f"Past medical history: {pmh}. {hist_line}\n"
            f"Social history: {soc_line}\nFamily history: {fam_line}\n\n"
            f"Disposition: Home with follow-up in 1 week.\n"
        )
    docs.append({"id": f"ds-{n}", "kind": "discharge-summary", "text": ds})
    if rng.random() < 0.4:
        hp = (
            f"HISTORY AND PHYSICAL\n\nCHIEF COMPLAINT\n{cc.capitalize()}.\n\n"
            f"HISTORY OF PRESENT ILLNESS\n{age}-year-old {sex} with a history of {pmh.lower() if sec_lines else 'no chronic illness'} "  # noqa: E501
            f"who presents with {cc}. {neg}\n\n"
            f"REVIEW OF SYSTEMS\nNegative except as in HPI.\n\n"
            f"ASSESSMENT AND PLAN\n1. {'Suspected ' if not uncertain_word else ''}{clean(text).split(',')[0].lower()}: admit, treat.\n"  # noqa: E501
        )
        docs.append({"id": f"hp-{n}", "kind": "h-and-p", "text": hp})
    return {"id": f"enc-{n}", "setting": "inpatient", "documents": docs, "gold": sorted(gold), "principal": principal}


OUTPATIENT = [
    # (assessment lines with codes, chief complaint with symptom codes coded only when no diagnosis is established)
    (
        [
            ("Type 2 diabetes mellitus, poorly controlled", ("E11.65",)),
            ("Essential hypertension", ("I10",)),
            ("Hyperlipidemia", ("E78.5",)),
        ],
        "diabetes follow-up",
        (),
    ),
    (
        [("!DM2 with CKD stage 3a", ("E11.22", "N18.31")), ("Hypertension", ("I12.9",))],
        "follow-up of diabetes and kidney function",
        (),
    ),
    ([("Probable streptococcal pharyngitis, rapid strep pending", ())], "sore throat and fever", ("J02.9", "R50.9")),
    ([("Streptococcal pharyngitis, rapid strep positive", ("J02.0",))], "sore throat", ()),
    ([("Acute cystitis", ("N30.00",))], "burning with urination", ()),
    ([("!Possible urinary tract infection, urine culture sent", ())], "dysuria and urinary frequency", ("R30.0", "R35.0")),
    ([("Low back pain", ("M54.50",))], "low back pain for two weeks", ()),
    ([("!Left-sided sciatica", ("M54.32",))], "back pain radiating down the left leg", ()),
    ([("Primary osteoarthritis of the right knee", ("M17.11",))], "right knee pain", ()),
    ([("Sprain of the left ankle", ("S93.402A",))], "left ankle pain after twisting it", ()),
    ([("COPD, stable", ("J44.9",)), ("Former smoker", ("Z87.891",))], "COPD follow-up", ()),
    ([("Depression", ("F32.A",)), ("Generalized anxiety disorder", ("F41.1",))], "mood follow-up", ()),
    ([("Hypothyroidism", ("E03.9",))], "thyroid follow-up", ()),
    ([("Mild persistent asthma with acute exacerbation", ("J45.31",))], "wheezing and cough", ()),
    ([("!Gout flare, right first MTP joint", ("M10.9",))], "painful swollen toe", ()),
    ([("Migraine without aura", ("G43.009",))], "recurrent headaches", ()),
    ([("Likely viral upper respiratory infection", ())], "cough and nasal congestion", ("R05.9", "R09.81")),
    ([("Permanent atrial fibrillation, rate controlled", ("I48.21",))], "atrial fibrillation follow-up", ()),
    ([("!Rule out pneumonia, chest x-ray ordered", ())], "cough and fever", ("R05.9", "R50.9")),
    ([("Atypical chest pain", ("R07.89",))], "chest discomfort", ()),
]


def outpatient(rng: random.Random, n: int, evaluation: bool) -> dict:
    age = rng.randint(20, 85)
    sex = rng.choice(["man", "woman"])
    usable = [o for o in OUTPATIENT if evaluation or not any(a.startswith("!") for a, _ in o[0])]
    lines, cc, cc_codes = rng.choice(usable)
    gold: set[str] = set(cc_codes)
    for _, c in lines:
        gold.update(c)
    principal = lines[0][1][0] if lines[0][1] else cc_codes[0]
    fam_line, fam_codes = pick(rng, FAMILY, evaluation)
    soc_line, soc_codes = pick(rng, SOCIAL, evaluation)
    if any("Former smoker" in a for a, _ in lines):
        soc_line, soc_codes = "Quit smoking in 2015.", ("Z87.891",)
    gold.update(fam_codes)
    gold.update(soc_codes)
    neg = clean(pick(rng, NEGATIVES, evaluation))
    if "chest" in cc or "fever" in cc or "cough" in cc:
        neg = "No nausea, vomiting or diarrhea."
    extra = ""
    if rng.random() < 0.25:
        extra = "\n\nImmunizations: Influenza vaccine administered today."
        gold.update(("G0008", "Z23"))
    note = (
        f"PROGRESS NOTE\nDate of service: 2025-0{rng.randint(1, 9)}-2{rng.randint(0, 8)}    Provider: {rng.choice(DOCTORS)}\n\n"
        f"CHIEF COMPLAINT: {cc.capitalize()}.\n\n"
        f"SUBJECTIVE\n{age}-year-old {sex} here for {cc}. {neg}\n\n"
        f"SOCIAL HISTORY\n{soc_line}\n\nFAMILY HISTORY\n{fam_line}\n\n"
        f"OBJECTIVE\nVitals: BP 132/84, HR 78, T 37.1 C.\n\n"
        f"ASSESSMENT AND PLAN\n"
        + "\n".join(f"{i}. {clean(a)}." for i, (a, _) in enumerate(lines, 1))
        + extra
        + "\n\nReturn if symptoms worsen or fever develops.\n"
    )
    return {
        "id": f"enc-{n}",
        "setting": "outpatient",
        "documents": [{"id": f"note-{n}", "kind": "clinic-note", "text": note}],
        "gold": sorted(gold),
        "principal": principal,
    }


def screening(rng: random.Random, n: int, evaluation: bool) -> dict:
    high = rng.random() < 0.5
    polyp = rng.random() < 0.5
    ind = "Screening; family history of colon cancer in his father." if high else "Average-risk colon cancer screening."
    gold = {"Z12.11", "G0105" if high else "G0121"}
    if high:
        gold.add("Z80.0")
    post = "Sigmoid colon polyp." if polyp else "Normal colonoscopy."
    if polyp:
        gold.add("K63.5")
    note = (
        f"PROCEDURE NOTE\n\nPROCEDURE: Screening colonoscopy.\nINDICATION: {ind}\n"
        f"FINDINGS: {'A 6 mm sessile polyp in the sigmoid colon was removed with cold snare.' if polyp else 'Normal colon to the cecum.'}\n"  # noqa: E501
        f"POSTOPERATIVE DIAGNOSIS: {post}\nCOMPLICATIONS: None.\n"
    )
    return {
        "id": f"enc-{n}",
        "setting": "outpatient",
        "documents": [{"id": f"proc-{n}", "kind": "operative-note", "text": note}],
        "gold": sorted(gold),
        "principal": "Z12.11",
    }


def build(seed: int, count: int, evaluation: bool) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for n in range(1, count + 1):
        r = rng.random()
        if r < 0.55:
            out.append(inpatient(rng, n, evaluation))
        elif r < 0.92:
            out.append(outpatient(rng, n, evaluation))
        else:
            out.append(screening(rng, n, evaluation))
    return out


def main() -> None:
    for name, seed, count, evaluation in (("dev", 11, 40, False), ("eval", 2026, 120, True)):
        rows = build(seed, count, evaluation)
        with (HERE / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        print(f"{name}: {len(rows)} encounters, {sum(len(r['documents']) for r in rows)} documents")


if __name__ == "__main__":
    main()
