"""ICD-O-3 reference tables the registry engines need: topography (primary site) names and valid codes,
the paired organs that need laterality, sex-specific sites, and the names of common histologies.

No package on PyPI ships ICD-O-3, so this is a small table written here from public facts of the
classification (WHO ICD-O-3.2 topography headings and their subdivisions; the NAACCR list of paired
sites for laterality). It holds every topography code, but only the common histologies: a histology
not named here is still a valid code (four digits, 8000-9993), it just has no name to show.
"""

from __future__ import annotations

from chartkeeper.registry.codes import ICDO3Histology, ICDO3Topography

# Three-character topography headings and the fourth digits that exist under each.
_TOPOGRAPHY: dict[str, tuple[str, str]] = {
    "C00": ("Lip", "0123456 89"),
    "C01": ("Base of tongue", "9"),
    "C02": ("Other and unspecified parts of tongue", "01234 89"),
    "C03": ("Gum", "01 9"),
    "C04": ("Floor of mouth", "01 89"),
    "C05": ("Palate", "012 89"),
    "C06": ("Other and unspecified parts of mouth", "012 89"),
    "C07": ("Parotid gland", "9"),
    "C08": ("Other and unspecified major salivary glands", "01 89"),
    "C09": ("Tonsil", "01 89"),
    "C10": ("Oropharynx", "01234 89"),
    "C11": ("Nasopharynx", "0123 89"),
    "C12": ("Pyriform sinus", "9"),
    "C13": ("Hypopharynx", "012 89"),
    "C14": ("Other and ill-defined sites in lip, oral cavity and pharynx", "02 8"),
    "C15": ("Esophagus", "012345 89"),
    "C16": ("Stomach", "0123456 89"),
    "C17": ("Small intestine", "0123 89"),
    "C18": ("Colon", "0123456789"),
    "C19": ("Rectosigmoid junction", "9"),
    "C20": ("Rectum", "9"),
    "C21": ("Anus and anal canal", "012 8"),
    "C22": ("Liver and intrahepatic bile ducts", "01"),
    "C23": ("Gallbladder", "9"),
    "C24": ("Other and unspecified parts of biliary tract", "01 89"),
    "C25": ("Pancreas", "01234 789"),
    "C26": ("Other and ill-defined digestive organs", "0 89"),
    "C30": ("Nasal cavity and middle ear", "01"),
    "C31": ("Accessory sinuses", "0123 89"),
    "C32": ("Larynx", "0123 89"),
    "C33": ("Trachea", "9"),
    "C34": ("Bronchus and lung", "0123 89"),
    "C37": ("Thymus", "9"),
    "C38": ("Heart, mediastinum and pleura", "01234 8"),
    "C39": ("Other and ill-defined sites within respiratory system and intrathoracic organs", "0 89"),
    "C40": ("Bones, joints and articular cartilage of limbs", "0123 89"),
    "C41": ("Bones, joints and articular cartilage of other and unspecified sites", "01234 89"),
    "C42": ("Hematopoietic and reticuloendothelial systems", "01234"),
    "C44": ("Skin", "0123456789"),
    "C47": ("Peripheral nerves and autonomic nervous system", "0123456 89"),
    "C48": ("Retroperitoneum and peritoneum", "012 8"),
    "C49": ("Connective, subcutaneous and other soft tissues", "0123456 89"),
    "C50": ("Breast", "0123456 89"),
    "C51": ("Vulva", "012 89"),
    "C52": ("Vagina", "9"),
    "C53": ("Cervix uteri", "01 89"),
    "C54": ("Corpus uteri", "0123 89"),
    "C55": ("Uterus, NOS", "9"),
    "C56": ("Ovary", "9"),
    "C57": ("Other and unspecified female genital organs", "01234 789"),
    "C58": ("Placenta", "9"),
    "C60": ("Penis", "012 89"),
    "C61": ("Prostate gland", "9"),
    "C62": ("Testis", "01 9"),
    "C63": ("Other and unspecified male genital organs", "012 789"),
    "C64": ("Kidney", "9"),
    "C65": ("Renal pelvis", "9"),
    "C66": ("Ureter", "9"),
    "C67": ("Bladder", "0123456789"),
    "C68": ("Other and unspecified urinary organs", "01 89"),
    "C69": ("Eye and adnexa", "0123456 89"),
    "C70": ("Meninges", "01 9"),
    "C71": ("Brain", "0123456789"),
    "C72": ("Spinal cord, cranial nerves and other parts of central nervous system", "012345 89"),
    "C73": ("Thyroid gland", "9"),
    "C74": ("Adrenal gland", "01 9"),
    "C75": ("Other endocrine glands and related structures", "012345 89"),
    "C76": ("Other and ill-defined sites", "012345 78"),
    "C77": ("Lymph nodes", "012345 89"),
    "C80": ("Unknown primary site", "9"),
}

VALID_SITES: frozenset[str] = frozenset(
    f"{head}{d}" for head, (_, digits) in _TOPOGRAPHY.items() for d in digits if d != " ")

# Sites where laterality must be coded 1-5 or 9 (not 0): the NAACCR paired-organ list
# (Laterality item 410), including the central nervous system sites added for 2004 and later.
_PAIRED_RANGES = (
    "C079", "C080", "C081", "C090", "C091", "C098", "C099", "C300", "C301", "C310", "C312",
    "C340-C349", "C384", "C400-C403", "C413", "C414", "C441-C443", "C445-C447", "C471", "C472",
    "C491", "C492", "C500-C509", "C569", "C570-C572", "C620-C629", "C630", "C631", "C649", "C659",
    "C669", "C690-C699", "C700", "C710-C714", "C722-C725", "C740-C749", "C754",
)


def _expand(ranges: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for r in ranges:
        lo, _, hi = r.partition("-")
        hi = hi or lo
        out.update(s for s in VALID_SITES if lo <= s <= hi)
    return frozenset(out)


PAIRED_SITES: frozenset[str] = _expand(_PAIRED_RANGES)
FEMALE_ONLY_HEADINGS: frozenset[str] = frozenset({"C51", "C52", "C53", "C54", "C55", "C56", "C57", "C58"})
MALE_ONLY_HEADINGS: frozenset[str] = frozenset({"C60", "C61", "C62", "C63"})

# Common histologies (ICD-O-3 morphology, without behavior). A code missing here is still valid.
HISTOLOGY_NAMES: dict[str, str] = {
    "8000": "Neoplasm", "8010": "Carcinoma, NOS", "8041": "Small cell carcinoma, NOS",
    "8046": "Non-small cell carcinoma", "8070": "Squamous cell carcinoma, NOS",
    "8077": "Squamous intraepithelial neoplasia, grade III", "8090": "Basal cell carcinoma, NOS",
    "8120": "Urothelial (transitional cell) carcinoma", "8140": "Adenocarcinoma, NOS",
    "8148": "Glandular intraepithelial neoplasia, grade III", "8170": "Hepatocellular carcinoma, NOS",
    "8240": "Carcinoid tumor / neuroendocrine tumor, grade 1", "8246": "Neuroendocrine carcinoma, NOS",
    "8260": "Papillary adenocarcinoma, NOS", "8272": "Pituitary adenoma / pituitary neuroendocrine tumor",
    "8310": "Clear cell adenocarcinoma, NOS", "8312": "Renal cell carcinoma, NOS",
    "8380": "Endometrioid adenocarcinoma, NOS", "8441": "Serous carcinoma, NOS",
    "8480": "Mucinous adenocarcinoma", "8500": "Infiltrating duct carcinoma, NOS",
    "8520": "Lobular carcinoma, NOS", "8522": "Infiltrating duct and lobular carcinoma",
    "8720": "Malignant melanoma, NOS", "8800": "Sarcoma, NOS", "8936": "Gastrointestinal stromal tumor",
    "8960": "Nephroblastoma (Wilms tumor)", "8970": "Hepatoblastoma", "9050": "Mesothelioma",
    "9061": "Seminoma, NOS", "9380": "Glioma, malignant", "9400": "Astrocytoma, NOS",
    "9440": "Glioblastoma", "9510": "Retinoblastoma, NOS", "9530": "Meningioma, NOS",
    "9560": "Schwannoma, NOS", "9590": "Malignant lymphoma, NOS", "9650": "Hodgkin lymphoma, NOS",
    "9680": "Diffuse large B-cell lymphoma, NOS", "9690": "Follicular lymphoma, NOS",
    "9732": "Plasma cell myeloma", "9800": "Leukemia, NOS", "9823": "Chronic lymphocytic leukemia / SLL",
    "9861": "Acute myeloid leukemia, NOS", "9863": "Chronic myeloid leukemia, NOS",
    "9950": "Polycythemia vera", "9961": "Primary myelofibrosis", "9962": "Essential thrombocythemia",
    "9989": "Myelodysplastic syndrome, NOS",
}


def site_heading(site: ICDO3Topography | str) -> str:
    """The three-character heading (``C50``) of a site code."""
    return str(site)[:3]


def site_name(site: ICDO3Topography | str) -> str | None:
    entry = _TOPOGRAPHY.get(site_heading(site))
    return entry[0] if entry else None


def is_valid_site(site: ICDO3Topography | str) -> bool:
    return str(site).replace(".", "").upper() in VALID_SITES


def is_paired_site(site: ICDO3Topography | str) -> bool:
    return str(site).replace(".", "").upper() in PAIRED_SITES


def histology_name(histology: ICDO3Histology | str) -> str | None:
    return HISTOLOGY_NAMES.get(str(histology))


def histology_group(histology: ICDO3Histology | str) -> str:
    """The first three digits: under the SEER multiple primary rules, histologies that differ in the
    first three digits are different histologies (hematopoietic neoplasms excepted: see same_tumor)."""
    return str(histology)[:3]


def is_hematopoietic(histology: ICDO3Histology | str) -> bool:
    return "9590" <= str(histology) <= "9993"
