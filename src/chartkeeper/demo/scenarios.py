# ruff: noqa: E501 - code tables keep one entry per line
"""Clinical scenarios: what happens in a visit or a stay, and the words the physicians use for it."""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------------------
# Procedures
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proc:
    key: str
    text: str  # as the surgeon names it
    pcs: tuple[tuple[str, str], ...] = ()  # ICD-10-PCS (code, title), inpatient only
    snomed: tuple[str, str] | None = None
    specimen: str = ""  # pathology key ("" = no specimen)
    surgeon: str = "surgery"  # specialty that performs it
    anesthesia: str = "general endotracheal anesthesia"
    findings: str = ""
    technique: str = ""
    ebl: int = 20  # estimated blood loss, mL


PROCS: dict[str, Proc] = {
    p.key: p
    for p in (
        Proc(
            "lap_appy", "Laparoscopic appendectomy",
            (("0DTJ4ZZ", "Resection of Appendix, Percutaneous Endoscopic Approach"),),
            ("6025007", "Laparoscopic appendectomy"), specimen="appendix",
            findings="Inflamed, edematous appendix without perforation. Small amount of reactive fluid in the right lower quadrant.",
            technique="Three ports were placed. The mesoappendix was divided with an energy device and the base of the appendix was "
            "secured with an endoscopic stapler. The specimen was removed in a retrieval bag.",
        ),
        Proc(
            "lap_chole", "Laparoscopic cholecystectomy",
            (("0FT44ZZ", "Resection of Gallbladder, Percutaneous Endoscopic Approach"),),
            ("45595009", "Laparoscopic cholecystectomy"), specimen="gallbladder",
            findings="Distended, inflamed gallbladder with multiple stones. Critical view of safety obtained.",
            technique="Four ports were placed. The cystic duct and cystic artery were clipped and divided. The gallbladder was "
            "removed from the liver bed with electrocautery and extracted in a retrieval bag.",
        ),
        Proc(
            "pci", "Percutaneous coronary intervention with drug-eluting stent",
            (("027034Z", "Dilation of Coronary Artery, One Artery with Drug-eluting Intraluminal Device, Percutaneous Approach"),),
            ("415070008", "Percutaneous coronary intervention"), surgeon="cardiology", anesthesia="moderate sedation",
            findings="90% stenosis of the proximal left anterior descending artery. TIMI 3 flow after stenting.",
            technique="Right radial access. A drug-eluting stent was deployed across the lesion with no residual stenosis.",
            ebl=5,
        ),
        Proc(
            "hemiarthroplasty_r", "Right hip hemiarthroplasty",
            (("0SRR0J9", "Replacement of Right Hip Joint, Femoral Surface with Synthetic Substitute, Cemented, Open Approach"),),
            None, surgeon="orthopedics", anesthesia="spinal anesthesia",
            findings="Displaced femoral neck fracture of the right hip.",
            technique="Posterior approach. The femoral head was removed and a cemented bipolar hemiarthroplasty was placed. "
            "The hip was stable through a full range of motion.",
            ebl=250,
        ),
        Proc(
            "hemiarthroplasty_l", "Left hip hemiarthroplasty",
            (("0SRS0J9", "Replacement of Left Hip Joint, Femoral Surface with Synthetic Substitute, Cemented, Open Approach"),),
            None, surgeon="orthopedics", anesthesia="spinal anesthesia",
            findings="Displaced femoral neck fracture of the left hip.",
            technique="Posterior approach. The femoral head was removed and a cemented bipolar hemiarthroplasty was placed. "
            "The hip was stable through a full range of motion.",
            ebl=250,
        ),
        Proc(
            "egd", "Esophagogastroduodenoscopy",
            (("0DJ08ZZ", "Inspection of Upper Intestinal Tract, Via Natural or Artificial Opening Endoscopic"),),
            None, surgeon="gastroenterology", anesthesia="monitored anesthesia care",
            findings="Clean-based duodenal ulcer without stigmata of recent bleeding.", technique="The scope was advanced to the "
            "second part of the duodenum. No active bleeding was seen.", ebl=0,
        ),
        Proc(
            "transfusion", "Transfusion of packed red blood cells",
            (("30233N1", "Transfusion of Nonautologous Red Blood Cells into Peripheral Vein, Percutaneous Approach"),),
            ("180207008", "Intravenous blood transfusion of packed cells"), surgeon="internal", anesthesia="", ebl=0,
        ),
        Proc(
            "delivery", "Spontaneous vaginal delivery",
            (("10E0XZZ", "Delivery of Products of Conception, External Approach"),),
            ("66348005", "Childbirth"), surgeon="obstetrics", anesthesia="epidural anesthesia",
            findings="Viable infant, Apgar scores 8 and 9.", technique="Spontaneous vaginal delivery over an intact perineum.",
            ebl=300,
        ),
        # cancer surgery (inpatient)
        Proc(
            "lumpectomy_r", "Right breast partial mastectomy with sentinel lymph node biopsy",
            (("0HBT0ZZ", "Excision of Right Breast, Open Approach"), ("07B50ZX", "Excision of Right Axillary Lymphatic, Open Approach, Diagnostic")),
            None, specimen="breast", findings="Wire-localized mass in the right breast. Two blue and radioactive sentinel nodes.",
            technique="The localized lesion was excised with a rim of normal tissue and oriented with sutures. Sentinel nodes were "
            "identified with radiotracer and blue dye and excised through a separate axillary incision.",
        ),
        Proc(
            "lumpectomy_l", "Left breast partial mastectomy with sentinel lymph node biopsy",
            (("0HBU0ZZ", "Excision of Left Breast, Open Approach"), ("07B60ZX", "Excision of Left Axillary Lymphatic, Open Approach, Diagnostic")),
            None, specimen="breast", findings="Wire-localized mass in the left breast. Two blue and radioactive sentinel nodes.",
            technique="The localized lesion was excised with a rim of normal tissue and oriented with sutures. Sentinel nodes were "
            "identified with radiotracer and blue dye and excised through a separate axillary incision.",
        ),
        Proc("lobectomy_rul", "Video-assisted thoracoscopic right upper lobectomy with mediastinal lymph node dissection",
             (("0BTC4ZZ", "Resection of Right Upper Lung Lobe, Percutaneous Endoscopic Approach"),), None, specimen="lung",
             surgeon="thoracic", findings="Firm mass in the right upper lobe without pleural involvement.",
             technique="Four thoracoscopic ports. The lobar vessels and bronchus were divided with staplers and the lobe was removed "
             "in a bag. Mediastinal stations 4R, 7 and 10R were sampled.", ebl=150),
        Proc("lobectomy_lul", "Video-assisted thoracoscopic left upper lobectomy with mediastinal lymph node dissection",
             (("0BTG4ZZ", "Resection of Left Upper Lung Lobe, Percutaneous Endoscopic Approach"),), None, specimen="lung",
             surgeon="thoracic", findings="Firm mass in the left upper lobe without pleural involvement.",
             technique="Four thoracoscopic ports. The lobar vessels and bronchus were divided with staplers and the lobe was removed "
             "in a bag. Mediastinal stations 5, 7 and 10L were sampled.", ebl=150),
        Proc("lobectomy_rll", "Video-assisted thoracoscopic right lower lobectomy with mediastinal lymph node dissection",
             (("0BTF4ZZ", "Resection of Right Lower Lung Lobe, Percutaneous Endoscopic Approach"),), None, specimen="lung",
             surgeon="thoracic", findings="Firm mass in the right lower lobe without pleural involvement.",
             technique="Four thoracoscopic ports. The lobar vessels and bronchus were divided with staplers and the lobe was removed "
             "in a bag. Mediastinal stations 4R, 7 and 9R were sampled.", ebl=150),
        Proc("lobectomy_lll", "Video-assisted thoracoscopic left lower lobectomy with mediastinal lymph node dissection",
             (("0BTJ4ZZ", "Resection of Left Lower Lung Lobe, Percutaneous Endoscopic Approach"),), None, specimen="lung",
             surgeon="thoracic", findings="Firm mass in the left lower lobe without pleural involvement.",
             technique="Four thoracoscopic ports. The lobar vessels and bronchus were divided with staplers and the lobe was removed "
             "in a bag. Mediastinal stations 5, 7 and 9L were sampled.", ebl=150),
        Proc("sigmoidectomy", "Laparoscopic sigmoid colectomy",
             (("0DTN4ZZ", "Resection of Sigmoid Colon, Percutaneous Endoscopic Approach"),), ("43075005", "Partial resection of colon"),
             specimen="colon", findings="Palpable mass in the sigmoid colon without liver or peritoneal metastases.",
             technique="Medial-to-lateral mobilization with high ligation of the inferior mesenteric artery. Stapled colorectal "
             "anastomosis; negative leak test.", ebl=100),
        Proc("right_hemicolectomy", "Laparoscopic right hemicolectomy",
             (("0DTF4ZZ", "Resection of Right Large Intestine, Percutaneous Endoscopic Approach"),), ("43075005", "Partial resection of colon"),
             specimen="colon", findings="Mass in the right colon without liver or peritoneal metastases.",
             technique="Medial-to-lateral mobilization with ligation of the ileocolic pedicle. Stapled ileocolic anastomosis.", ebl=100),
        Proc("prostatectomy", "Robotic-assisted laparoscopic radical prostatectomy with bilateral pelvic lymph node dissection",
             (("0VT04ZZ", "Resection of Prostate, Percutaneous Endoscopic Approach"),
              ("8E0W4CZ", "Robotic Assisted Procedure of Trunk Region, Percutaneous Endoscopic Approach")),
             ("90470006", "Prostatectomy"), specimen="prostate", surgeon="urology",
             findings="Prostate of about 45 grams. No gross extraprostatic extension.",
             technique="Six robotic ports. Bilateral nerve-sparing dissection, bladder neck preservation and running "
             "vesicourethral anastomosis. Bilateral pelvic lymph node dissection.", ebl=200),
    )
}

# Outpatient procedures (no ICD-10-PCS: outpatient services are coded in CPT/HCPCS, not shipped here).
OUTPATIENT_PROCS: dict[str, tuple[str, tuple[str, str] | None]] = {
    "breast_biopsy": ("Ultrasound-guided core needle biopsy of the breast", ("86273004", "Biopsy")),
    "lung_biopsy": ("CT-guided percutaneous core needle biopsy of the lung", ("86273004", "Biopsy")),
    "colonoscopy_biopsy": ("Colonoscopy with biopsy", ("73761001", "Colonoscopy")),
    "prostate_biopsy": ("Transrectal ultrasound-guided prostate needle biopsy", ("65575008", "Biopsy of prostate")),
    "skin_biopsy": ("Shave biopsy of skin lesion", ("86273004", "Biopsy")),
    "wide_excision": ("Wide local excision of melanoma", None),
    "skin_excision": ("Excision of basal cell carcinoma with 4 mm margins", None),
    "polypectomy": ("Colonoscopy with snare polypectomy", ("73761001", "Colonoscopy")),
    "laceration_repair": ("Simple repair of laceration", ("288086009", "Suture open wound")),
}

# Radiation therapy (performed over weeks; ICD-10-PCS for the record, as registries and the MS-DRG do).
RADIATION: dict[str, tuple[str, str, str]] = {
    "breast_r": ("DM011ZZ", "Beam Radiation of Right Breast using Photons 1 - 10 MeV", "Whole-breast external beam radiation, right breast, 42.56 Gy in 16 fractions"),
    "breast_l": ("DM001ZZ", "Beam Radiation of Left Breast using Photons 1 - 10 MeV", "Whole-breast external beam radiation, left breast, 42.56 Gy in 16 fractions"),
    "lung": ("DB021ZZ", "Beam Radiation of Lung using Photons 1 - 10 MeV", "External beam radiation to the lung and mediastinum, 60 Gy in 30 fractions"),
    "prostate": ("DV001ZZ", "Beam Radiation of Prostate using Photons 1 - 10 MeV", "Intensity-modulated radiation therapy to the prostate, 70 Gy in 28 fractions"),
}

# --------------------------------------------------------------------------------------------------
# Inpatient stays
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    key: str
    principal: str  # ICD-10-CM code
    weights: tuple[float, float, float, float]  # relative weight by age band (<18, 18-44, 45-64, 65+)
    service: str  # attending specialty
    los: tuple[int, int]
    cc: str
    hpi: str
    negatives: str
    exam: str
    course: str
    plan: str
    extra: tuple[str, ...] = ()  # other diagnoses always coded with it
    requires: str = ""  # chronic condition key needed
    sex: str | None = None
    min_age: int = 0
    max_age: int = 120
    meds: tuple[str, ...] = ()
    discharge_meds: tuple[str, ...] = ()
    labs: dict[str, tuple[float, float]] | None = None  # admission lab overrides (low, high)
    imaging: tuple[str, str] | None = None  # (study, impression)
    procedure: str = ""
    consult: str = ""  # consultant specialty
    priority: str = "EM"
    admit_source: str = "emd"
    uncertain: str = ""  # how the H&P qualifies the working diagnosis ("probable", "likely")


ADMISSIONS: tuple[Admission, ...] = (
    Admission(
        "pneumonia", "J18.9", (0.3, 0.6, 1.0, 2.0), "internal", (3, 5),
        "Cough, fever and shortness of breath",
        "presents with {d} days of productive cough with yellow sputum, fevers to 38.9 C and increasing shortness of breath",
        "Denies chest pain, hemoptysis, recent travel or sick contacts.",
        "Crackles at the right lung base. No accessory muscle use.",
        "Treated with IV {abx}. Blood cultures showed no growth. Fever resolved on hospital day 2 and oxygen was weaned to room air. "
        "Transitioned to oral antibiotics to complete a 5-day course.",
        "Blood and sputum cultures, IV antibiotics, supplemental oxygen to keep SpO2 above 92%, incentive spirometry.",
        meds=("ceftriaxone", "azithromycin_iv"), discharge_meds=("cefuroxime",),
        labs={"wbc": (12.5, 19.0)}, imaging=("XR chest, 2 views", "Right lower lobe consolidation consistent with pneumonia. No effusion."),
        uncertain="probable",
    ),
    Admission(
        "chf", "I50.23", (0.0, 0.0, 1.0, 2.5), "internal", (3, 6),
        "Shortness of breath and leg swelling",
        "with known systolic heart failure presents with 1 week of progressive dyspnea on exertion, orthopnea and a 4 kg weight "
        "gain. Reports dietary indiscretion over the holidays",
        "Denies chest pain, palpitations or syncope.",
        "JVP elevated to the angle of the jaw. Bibasilar crackles. 2+ pitting edema of both legs to the knees.",
        "Diuresed with IV furosemide with net negative 4.2 liters. Dyspnea resolved and weight returned to dry weight. "
        "Guideline-directed medical therapy continued.",
        "IV diuresis, strict intake and output, daily weights, 2 g sodium diet, fluid restriction, echocardiogram.",
        requires="chf", meds=("furosemide_iv", "heparin"), labs={"bnp": (900, 2400)},
        imaging=("XR chest, portable", "Cardiomegaly with pulmonary vascular congestion and small bilateral pleural effusions."),
        consult="cardiology",
    ),
    Admission(
        "copd", "J44.1", (0.0, 0.0, 1.0, 1.6), "internal", (3, 5),
        "Worsening shortness of breath and wheezing",
        "with COPD presents with 4 days of increased dyspnea, wheezing and sputum production despite using the rescue inhaler "
        "every 2 hours",
        "Denies fever, chest pain or leg swelling.",
        "Diffuse expiratory wheezes with prolonged expiratory phase. Speaking in short sentences.",
        "Treated with scheduled nebulizers, IV methylprednisolone transitioned to oral prednisone, and azithromycin. "
        "Back to baseline exercise tolerance on room air.",
        "Nebulized bronchodilators, systemic steroids, azithromycin, oxygen to keep SpO2 88-92%.",
        requires="copd", meds=("methylprednisolone", "azithromycin_iv", "heparin"), discharge_meds=("prednisone",),
        imaging=("XR chest, 2 views", "Hyperinflated lungs without focal consolidation."),
    ),
    Admission(
        "sepsis", "A41.9", (0.1, 0.3, 0.8, 2.0), "internal", (4, 8),
        "Fever and confusion",
        "brought in by family with 2 days of fever, dysuria and new confusion. Found to be hypotensive in the emergency "
        "department with lactate elevated",
        "Family denies falls, cough or new medications.",
        "Febrile and tachycardic. Suprapubic tenderness. Oriented to person only.",
        "Met sepsis criteria on arrival with a urinary source. Received 30 mL/kg crystalloid and broad-spectrum antibiotics "
        "({abx}), narrowed when the urine culture grew pan-sensitive E. coli. Mental status returned to baseline.",
        "Sepsis bundle: lactate, blood cultures, IV fluids, broad-spectrum antibiotics within 1 hour.",
        extra=("N39.0",), min_age=18, meds=("vancomycin", "pip_tazo", "sodium_chloride", "heparin"), discharge_meds=("cefuroxime",),
        labs={"wbc": (14.0, 24.0), "lactate": (2.6, 5.2)},
    ),
    Admission(
        "nstemi", "I21.4", (0.0, 0.1, 1.0, 1.4), "cardiology", (2, 4),
        "Chest pain",
        "presents with 3 hours of substernal chest pressure radiating to the left arm with diaphoresis, starting at rest",
        "Denies fever, cough, leg swelling or recent immobilization.",
        "Diaphoretic on arrival. Regular rhythm, no murmurs. Lungs clear.",
        "Troponin peaked at {trop} ng/mL. Started on aspirin, heparin drip and high-intensity statin. Cardiac catheterization "
        "showed a proximal LAD lesion treated with a drug-eluting stent. No recurrent chest pain.",
        "Dual antiplatelet therapy, heparin drip, high-intensity statin, beta-blocker, cardiac catheterization.",
        min_age=40, meds=("heparin_drip", "aspirin"), discharge_meds=("clopidogrel", "atorvastatin", "metoprolol"),
        labs={"troponin": (0.6, 6.5)}, procedure="pci",
    ),
    Admission(
        "appendicitis", "K35.80", (1.2, 1.0, 0.4, 0.1), "surgery", (1, 3),
        "Right lower quadrant abdominal pain",
        "presents with 24 hours of periumbilical pain migrating to the right lower quadrant with anorexia and nausea",
        "Denies diarrhea, urinary symptoms or vaginal bleeding." , "Tender at McBurney's point with guarding. Positive Rovsing sign.",
        "Taken to the operating room for laparoscopic appendectomy on the day of admission. Tolerated a regular diet on "
        "postoperative day 1 and was discharged home.",
        "NPO, IV fluids, IV antibiotics, laparoscopic appendectomy.",
        min_age=5, max_age=70, meds=("pip_tazo", "morphine", "ondansetron"), discharge_meds=("oxycodone_apap",),
        labs={"wbc": (11.5, 17.5)}, imaging=("CT abdomen and pelvis with contrast", "Dilated, thick-walled appendix with periappendiceal "
        "fat stranding, consistent with acute appendicitis. No abscess."), procedure="lap_appy", priority="EM",
        uncertain="likely",
    ),
    Admission(
        "cholecystitis", "K80.00", (0.1, 0.8, 1.0, 0.8), "surgery", (2, 3),
        "Right upper quadrant pain",
        "presents with 2 days of constant right upper quadrant pain radiating to the right shoulder after fatty meals, with "
        "nausea and vomiting",
        "Denies jaundice, acholic stools or dark urine.",
        "Right upper quadrant tenderness with a positive Murphy sign.",
        "Underwent laparoscopic cholecystectomy on hospital day 2 without complication. Pain controlled on oral medication.",
        "IV antibiotics, surgical consultation, laparoscopic cholecystectomy.",
        min_age=18, meds=("pip_tazo", "morphine", "ondansetron"), discharge_meds=("oxycodone_apap",),
        labs={"wbc": (11.0, 16.0)}, imaging=("US abdomen, right upper quadrant", "Cholelithiasis with gallbladder wall thickening, "
        "pericholecystic fluid and a positive sonographic Murphy sign, consistent with acute cholecystitis."),
        procedure="lap_chole",
    ),
    Admission(
        "hip_fracture_r", "S72.001A", (0.0, 0.0, 0.2, 1.6), "orthopedics", (3, 5),
        "Right hip pain after a fall",
        "fell at home after tripping on a rug and was unable to bear weight on the right leg",
        "Denies head strike, loss of consciousness, chest pain or dizziness before the fall.",
        "Right leg shortened and externally rotated. Distal pulses intact.",
        "Underwent right hip hemiarthroplasty on hospital day 1. Weight bearing as tolerated with physical therapy. "
        "Discharged to a skilled nursing facility for rehabilitation.",
        "Pain control, preoperative evaluation, hemiarthroplasty, DVT prophylaxis.",
        extra=("W19.XXXA",), min_age=60, meds=("cefazolin", "morphine", "heparin"), discharge_meds=("oxycodone_apap",),
        imaging=("XR right hip, 2 views", "Displaced subcapital fracture of the right femoral neck."),
        procedure="hemiarthroplasty_r",
    ),
    Admission(
        "hip_fracture_l", "S72.002A", (0.0, 0.0, 0.2, 1.6), "orthopedics", (3, 5),
        "Left hip pain after a fall",
        "fell in the bathroom and was unable to bear weight on the left leg",
        "Denies head strike, loss of consciousness, chest pain or dizziness before the fall.",
        "Left leg shortened and externally rotated. Distal pulses intact.",
        "Underwent left hip hemiarthroplasty on hospital day 1. Weight bearing as tolerated with physical therapy. "
        "Discharged to a skilled nursing facility for rehabilitation.",
        "Pain control, preoperative evaluation, hemiarthroplasty, DVT prophylaxis.",
        extra=("W19.XXXA",), min_age=60, meds=("cefazolin", "morphine", "heparin"), discharge_meds=("oxycodone_apap",),
        imaging=("XR left hip, 2 views", "Displaced subcapital fracture of the left femoral neck."),
        procedure="hemiarthroplasty_l",
    ),
    Admission(
        "stroke", "I63.9", (0.0, 0.05, 0.8, 1.8), "neurology", (3, 6),
        "Right-sided weakness and slurred speech",
        "was found by a family member with right arm weakness and slurred speech; last known well 5 hours before arrival, "
        "outside the thrombolysis window",
        "Denies headache, trauma or seizure activity.",
        "Right pronator drift, right facial droop and mild dysarthria. NIHSS 5.",
        "MRI confirmed an acute left MCA territory infarct. Started on aspirin and high-intensity statin. Telemetry without "
        "atrial fibrillation. Speech and physical therapy evaluated; discharged to inpatient rehabilitation.",
        "Permissive hypertension, antiplatelet therapy, statin, telemetry, echocardiogram, swallow evaluation.",
        min_age=45, meds=("aspirin", "heparin"), discharge_meds=("atorvastatin", "clopidogrel"),
        imaging=("MRI brain without contrast", "Acute infarct in the left middle cerebral artery territory. No hemorrhage."),
    ),
    Admission(
        "gi_bleed", "K92.2", (0.0, 0.2, 0.8, 1.4), "internal", (2, 4),
        "Black stools and lightheadedness",
        "presents with 2 days of melena and lightheadedness on standing. Has been taking naproxen for knee pain",
        "Denies hematemesis, abdominal pain or prior GI bleeding.",
        "Pale, orthostatic. Abdomen soft, nontender. Melena on rectal examination.",
        "Transfused 2 units of packed red blood cells for hemoglobin of {hgb}. EGD showed a clean-based duodenal ulcer. "
        "Treated with IV pantoprazole; hemoglobin stable for 48 hours before discharge. NSAIDs stopped.",
        "Two large-bore IVs, type and cross, IV proton pump inhibitor, transfusion for hemoglobin below 7, GI consultation.",
        extra=("D62",), min_age=30, meds=("pantoprazole_iv", "sodium_chloride"), discharge_meds=("omeprazole",),
        labs={"hemoglobin": (6.4, 7.6)}, procedure="egd", consult="gastroenterology",
    ),
    Admission(
        "asthma_child", "J45.31", (2.0, 0.0, 0.0, 0.0), "pediatrics", (1, 3),
        "Wheezing and difficulty breathing",
        "with asthma presents with 2 days of cough, wheezing and increased work of breathing after a viral illness, "
        "not relieved by albuterol at home",
        "Parents deny fever above 38.5 C, vomiting or choking episodes.",
        "Diffuse wheezes with subcostal retractions. Good air entry after nebulizer treatment.",
        "Treated with continuous then scheduled albuterol and oral steroids. Weaned to albuterol every 4 hours before discharge.",
        "Albuterol nebulizers, systemic steroids, oxygen to keep SpO2 above 92%, asthma action plan.",
        min_age=3, max_age=17, meds=("methylprednisolone",), discharge_meds=("prednisone",),
        imaging=("XR chest, 2 views", "Peribronchial cuffing without focal consolidation."),
    ),
    Admission(
        "cellulitis", "L03.115", (0.2, 0.6, 1.0, 1.0), "internal", (2, 4),
        "Red, painful right leg",
        "presents with 3 days of spreading redness, warmth and pain of the right lower leg after a small abrasion",
        "Denies fever at home, calf pain or recent travel.",
        "Erythema and warmth of the right shin, 12 by 8 cm, with no fluctuance or crepitus.",
        "Treated with IV antibiotics with regression of the erythema within 48 hours. Transitioned to oral therapy.",
        "IV antibiotics, elevation, mark the borders of erythema, ultrasound to rule out abscess.",
        min_age=18, meds=("cefazolin", "heparin"), discharge_meds=("cefuroxime",), labs={"wbc": (10.5, 14.5)},
    ),
    Admission(
        "delivery", "O80", (0.0, 3.0, 0.0, 0.0), "obstetrics", (1, 2),
        "Contractions",
        "G2P1 at 39 weeks 2 days gestation presents in active labor with regular contractions every 3 minutes",
        "Denies leakage of fluid, vaginal bleeding, headache or visual changes.",
        "Cervix 6 cm dilated, 90% effaced. Fetal heart tracing category I.",
        "Progressed to an uncomplicated spontaneous vaginal delivery of a viable infant. Postpartum course uncomplicated.",
        "Admit to labor and delivery, epidural on request, expectant management.",
        extra=("Z37.0",), sex="female", min_age=18, max_age=42, meds=(), discharge_meds=("ibuprofen",),
        admit_source="other", priority="UR",
    ),
)
ADMISSION_BY_KEY = {a.key: a for a in ADMISSIONS}

# Secondary conditions that a stay may add, documented (coded) or left for a coding query.
SECONDARY: dict[str, tuple[str, str, tuple[float, float]]] = {
    # key: (ICD-10-CM, lab key, abnormal value range)
    "hyponatremia": ("E87.1", "sodium", (124.0, 130.0)),
    "hypokalemia": ("E87.6", "potassium", (2.8, 3.3)),
    "aki": ("N17.9", "creatinine", (2.1, 3.4)),
}

# --------------------------------------------------------------------------------------------------
# Outpatient and emergency problems
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acute:
    key: str
    code: str
    weights: tuple[float, float, float, float]
    complaint: str
    hpi: str
    negatives: str
    exam: str
    plan: str
    meds: tuple[str, ...] = ()
    sex: str | None = None
    min_age: int = 0
    emergency: bool = False
    labs: tuple[str, ...] = ()
    imaging: tuple[str, str] | None = None


ACUTE: tuple[Acute, ...] = (
    Acute("uri", "J06.9", (3, 1.5, 1, 0.7), "Cough and congestion", "reports 4 days of nasal congestion, sore throat and dry cough",
          "Denies fever, shortness of breath or ear pain.", "Nasal mucosa edematous. Lungs clear.",
          "Supportive care, fluids, saline nasal spray. Return if fever or worsening symptoms."),
    Acute("pharyngitis", "J02.9", (2, 1, 0.5, 0.3), "Sore throat", "reports 3 days of sore throat and painful swallowing",
          "Denies cough, drooling or difficulty breathing.", "Pharyngeal erythema without exudate. Rapid strep negative.",
          "Supportive care with warm salt-water gargles and acetaminophen."),
    Acute("strep", "J02.0", (2, 0.5, 0.2, 0.1), "Sore throat and fever", "reports 2 days of fever and severe sore throat",
          "Denies cough or rash.", "Tonsillar exudate with tender anterior cervical nodes. Rapid strep positive.",
          "Antibiotics for 10 days, return to school or work after 24 hours of therapy.", meds=("amoxicillin",)),
    Acute("bronchitis", "J20.9", (0.5, 1, 1, 1), "Cough", "reports 10 days of productive cough after a cold",
          "Denies fever, hemoptysis or chest pain.", "Scattered rhonchi that clear with cough. No crackles.",
          "Supportive care; antibiotics are not indicated. Albuterol as needed for wheeze."),
    Acute("sinusitis", "J01.90", (0.5, 1, 1, 0.6), "Facial pressure", "reports 12 days of nasal congestion, purulent discharge and "
          "maxillary pressure", "Denies visual changes or severe headache.", "Maxillary sinus tenderness. Purulent nasal discharge.",
          "Antibiotics for 7 days, nasal saline irrigation.", meds=("amox_clav",)),
    Acute("uti", "N39.0", (0.3, 1.5, 1, 1.2), "Painful urination", "reports 2 days of dysuria, urinary frequency and urgency",
          "Denies fever, flank pain or vaginal discharge.", "Mild suprapubic tenderness. No costovertebral angle tenderness.",
          "Urine culture sent; nitrofurantoin for 5 days.", meds=("nitrofurantoin",), sex="female", min_age=12),
    Acute("back_pain", "M54.50", (0.1, 1.5, 1.5, 1), "Low back pain", "reports 1 week of low back pain after lifting boxes",
          "Denies leg weakness, numbness, bowel or bladder incontinence, fever or weight loss.",
          "Paraspinal tenderness. Straight leg raise negative bilaterally. Strength 5/5.",
          "NSAIDs, heat, activity as tolerated, physical therapy referral if not improved in 4 weeks.", meds=("naproxen",),
          min_age=16),
    Acute("otitis_r", "H66.91", (3, 0.2, 0.1, 0.05), "Right ear pain", "reports 2 days of right ear pain and fever",
          "Denies ear drainage or hearing loss.", "Right tympanic membrane bulging and erythematous.",
          "Amoxicillin for 10 days, analgesics.", meds=("amoxicillin",)),
    Acute("gastroenteritis", "A08.4", (1.5, 1, 0.7, 0.6), "Vomiting and diarrhea", "reports 1 day of nausea, vomiting and watery "
          "diarrhea; several family members are sick", "Denies blood in the stool or severe abdominal pain.",
          "Mildly dry mucous membranes. Abdomen soft, diffusely mildly tender.", "Oral rehydration, advance diet as tolerated."),
    Acute("covid", "U07.1", (0.5, 1, 1, 1), "Fever and cough", "reports 3 days of fever, cough, myalgias and loss of taste; home "
          "antigen test positive", "Denies shortness of breath or chest pain.", "Lungs clear. SpO2 97% on room air.",
          "Isolation per public health guidance, supportive care, return precautions for dyspnea."),
    # emergency department
    Acute("chest_pain", "R07.9", (0.05, 0.8, 1.2, 1.2), "Chest pain", "presents with 2 hours of intermittent left-sided chest "
          "discomfort without exertional component", "Denies shortness of breath, diaphoresis, syncope or leg swelling.",
          "Chest wall nontender. Regular rate and rhythm. Lungs clear.",
          "Serial troponins negative and ECG without ischemic changes. Discharged with outpatient stress test.",
          emergency=True, min_age=25, labs=("troponin", "cbc", "bmp"), imaging=("XR chest, 1 view", "No acute cardiopulmonary process.")),
    Acute("ankle_sprain_r", "S93.401A", (1, 1, 0.5, 0.3), "Right ankle injury", "rolled the right ankle playing basketball and has "
          "pain and swelling over the lateral ankle", "Denies numbness or other injuries.",
          "Swelling and tenderness over the anterior talofibular ligament. Able to bear weight for 4 steps.",
          "RICE, ankle brace, ibuprofen, follow up with primary care in 1 week.", meds=("ibuprofen",), emergency=True,
          min_age=8, imaging=("XR right ankle, 3 views", "No fracture. Lateral soft tissue swelling.")),
    Acute("laceration", "S61.411A", (0.5, 1, 0.6, 0.3), "Hand laceration", "cut the right palm on a kitchen knife while cooking",
          "Denies numbness of the fingers. Tetanus vaccination up to date.",
          "2.5 cm linear laceration of the right palm. Full flexion and extension of all fingers. Sensation intact.",
          "Wound irrigated and repaired with simple interrupted sutures; suture removal in 10 days.", emergency=True, min_age=5),
    Acute("headache", "R51.9", (0.3, 1, 0.8, 0.4), "Headache", "presents with a 1-day bifrontal headache, gradual in onset",
          "Denies fever, neck stiffness, vision changes, weakness or the worst headache of life.",
          "Neurologic examination normal. No meningismus.",
          "Treated with IV fluids and antiemetic with resolution. Headache diary and primary care follow-up.",
          emergency=True, min_age=10),
)
ACUTE_BY_KEY = {a.key: a for a in ACUTE}

# --------------------------------------------------------------------------------------------------
# Cancer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Histology:
    text: str  # registry wording for the final diagnosis
    icdo3: str  # ICD-O-3 morphology/behaviour
    weight: float


@dataclass(frozen=True, slots=True)
class Primary:
    """One site variant of a cancer: the ICD-10-CM code, ICD-O-3 topography and the surgery for it."""

    code: str
    topography: str  # ICD-O-3, e.g. C50.4
    site_text: str  # "Left breast, upper outer quadrant"
    laterality: str  # "left" | "right" | "" (NAACCR: 1 right, 2 left, 0 not paired)
    surgery: str  # Proc key or outpatient proc key ("" = none)
    radiation: str = ""  # RADIATION key


CANCER_SITES: dict[str, tuple[Primary, ...]] = {
    "breast": (
        Primary("C50.411", "C50.4", "Right breast, upper outer quadrant", "right", "lumpectomy_r", "breast_r"),
        Primary("C50.412", "C50.4", "Left breast, upper outer quadrant", "left", "lumpectomy_l", "breast_l"),
        Primary("C50.211", "C50.2", "Right breast, upper inner quadrant", "right", "lumpectomy_r", "breast_r"),
        Primary("C50.212", "C50.2", "Left breast, upper inner quadrant", "left", "lumpectomy_l", "breast_l"),
    ),
    "lung": (
        Primary("C34.11", "C34.1", "Lung, right upper lobe", "right", "lobectomy_rul", "lung"),
        Primary("C34.12", "C34.1", "Lung, left upper lobe", "left", "lobectomy_lul", "lung"),
        Primary("C34.31", "C34.3", "Lung, right lower lobe", "right", "lobectomy_rll", "lung"),
        Primary("C34.32", "C34.3", "Lung, left lower lobe", "left", "lobectomy_lll", "lung"),
    ),
    "colon": (
        Primary("C18.7", "C18.7", "Colon, sigmoid", "", "sigmoidectomy"),
        Primary("C18.2", "C18.2", "Colon, ascending", "", "right_hemicolectomy"),
        Primary("C18.0", "C18.0", "Colon, cecum", "", "right_hemicolectomy"),
    ),
    "prostate": (Primary("C61", "C61.9", "Prostate", "", "prostatectomy", "prostate"),),
    "melanoma": (
        Primary("C43.59", "C44.5", "Skin of the back", "", "wide_excision"),
        Primary("C43.61", "C44.6", "Skin of the right upper arm", "right", "wide_excision"),
        Primary("C43.72", "C44.7", "Skin of the left lower leg", "left", "wide_excision"),
    ),
    "bcc": (
        Primary("C44.311", "C44.3", "Skin of the nose", "", "skin_excision"),
        Primary("C44.319", "C44.3", "Skin of the left cheek", "left", "skin_excision"),
        Primary("C44.41", "C44.4", "Skin of the neck", "", "skin_excision"),
    ),
}

HISTOLOGIES: dict[str, tuple[Histology, ...]] = {
    "breast": (Histology("Invasive ductal carcinoma", "8500/3", 0.8), Histology("Invasive lobular carcinoma", "8520/3", 0.2)),
    "lung": (Histology("Adenocarcinoma", "8140/3", 0.6), Histology("Squamous cell carcinoma", "8070/3", 0.3),
             Histology("Small cell carcinoma", "8041/3", 0.1)),
    "colon": (Histology("Adenocarcinoma", "8140/3", 1.0),),
    "prostate": (Histology("Acinar adenocarcinoma", "8140/3", 1.0),),
    "melanoma": (Histology("Malignant melanoma, superficial spreading type", "8743/3", 0.7),
                 Histology("Nodular melanoma", "8721/3", 0.3)),
    "bcc": (Histology("Basal cell carcinoma, nodular type", "8097/3", 1.0),),
}

# Site mix by sex and the chance of death within the follow-up for each site.
CANCER_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "female": (("breast", 0.46), ("lung", 0.18), ("colon", 0.14), ("melanoma", 0.1), ("bcc", 0.12)),
    "male": (("prostate", 0.34), ("lung", 0.24), ("colon", 0.16), ("melanoma", 0.12), ("bcc", 0.14)),
}
CANCER_DEATH: dict[str, float] = {"breast": 0.08, "lung": 0.45, "colon": 0.22, "prostate": 0.05, "melanoma": 0.08, "bcc": 0.0}
REPORTABLE: dict[str, bool] = {"breast": True, "lung": True, "colon": True, "prostate": True, "melanoma": True, "bcc": False}
