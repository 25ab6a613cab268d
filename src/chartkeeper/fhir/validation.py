"""Structural validation of FHIR R4 (4.0.1) resources before they are stored.

``validate(resource)`` returns a list of :class:`ValidationIssue` (empty when the resource is valid)
and never raises. Two layers:

1. **The schema** (``schema/r4-subset.schema.json.gz``, generated from HL7's official FHIR R4 JSON
   schema by ``scripts/gen_fhir_schema.py``). It checks element names, JSON types, cardinality
   (arrays for repeating elements, single values otherwise, required elements, no empty arrays,
   objects or strings), primitive formats (real calendar dates), reference syntax, required ``code``
   bindings and "one type at a time" for ``value[x]``-style choices. One compiled jsonschema-rs
   validator per resource type checks a resource against its own definition; the fast ``is_valid``
   path is the only cost for valid resources, and errors are turned into FHIR-style paths and plain
   sentences only when there are some.
2. **A few checks in Python** for what a schema cannot say, each touching only the elements it
   needs: the input must be JSON data (no sets, non-string keys, 64-bit overflow or nesting deeper
   than 254 levels: these would crash or mislead the Rust validator), ``resourceType`` must be one
   the store accepts, contained resources are validated against their own type (and may not contain
   resources or carry ``meta.versionId``/``lastUpdated``), and the CodeableConcepts with a required
   binding (Condition and AllergyIntolerance ``clinicalStatus``/``verificationStatus``) must carry a
   coding from their code system with one of its codes.

Not covered: FHIRPath invariants other than those above (e.g. ``con-3``, ``obs-6``), terminology
beyond the required bindings listed, whether a reference resolves, profiles and extensions'
definitions.
"""

from __future__ import annotations

import difflib
import gzip
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson

__all__ = ["SUPPORTED_TYPES", "ValidationIssue", "validate"]


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a resource, shaped like an OperationOutcome issue."""

    path: str  # FHIRPath-like element path, e.g. "Patient.name[0].given[1]" or "Observation.status"
    message: str  # a clear sentence naming the element, the problem and the fix
    code: str = "invalid"  # OperationOutcome issue type: structure, required, value, code-invalid, invalid


SUPPORTED_TYPES: frozenset[str] = frozenset(
    {
        "Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Encounter",
        "Condition", "Procedure", "Observation", "DiagnosticReport", "MedicationRequest",
        "MedicationStatement", "Medication", "AllergyIntolerance", "Immunization", "CarePlan",
        "CareTeam", "Goal", "DocumentReference", "Composition", "Claim", "ExplanationOfBenefit",
        "Coverage", "ImagingStudy", "Task", "Provenance", "Consent", "AuditEvent", "Device", "Specimen",
        "ServiceRequest", "Communication", "QuestionnaireResponse", "RelatedPerson", "Binary",
    }
)  # fmt: skip

# Most issues reported for one resource; the rest are summarised in one more issue.
MAX_ISSUES = 100

_SCHEMA_FILE = "r4-subset.schema.json.gz"


def _load_schema() -> dict[str, Any]:
    data = resources.files("chartkeeper.fhir").joinpath("schema").joinpath(_SCHEMA_FILE).read_bytes()
    schema: dict[str, Any] = orjson.loads(gzip.decompress(data))
    if set(schema["x-fhir"]["supported"]) != SUPPORTED_TYPES:
        raise RuntimeError(
            f"{_SCHEMA_FILE} was generated for other resource types than SUPPORTED_TYPES: "
            "run scripts/gen_fhir_schema.py after changing either"
        )
    return schema


_SCHEMA = _load_schema()
_DEFS: dict[str, Any] = _SCHEMA["definitions"]
_META: dict[str, Any] = _SCHEMA["x-fhir"]
_ALL_RESOURCE_TYPES: frozenset[str] = frozenset(_META["resourceTypes"])
_CHOICES: dict[str, dict[str, list[str]]] = _META["choices"]


def _element_spec(spec: str) -> tuple[str, str, str]:
    """``"0..* HumanName"`` -> ``("0", "*", "HumanName")``."""
    card, _, fhir_type = spec.partition(" ")
    mn, _, mx = card.partition("..")
    return mn, mx, fhir_type


# definition -> element -> (min, max, FHIR type)
_ELEMENTS: dict[str, dict[str, tuple[str, str, str]]] = {
    d: {e: _element_spec(spec) for e, spec in els.items()} for d, els in _META["elements"].items()
}

_VALIDATORS: dict[str, Any] = {}
_VALIDATORS_LOCK = threading.Lock()


def _validator(resource_type: str) -> Any:
    """The compiled validator for one resource type (compiled on first use, then shared)."""
    v = _VALIDATORS.get(resource_type)
    if v is None:
        with _VALIDATORS_LOCK:
            v = _VALIDATORS.get(resource_type)
            if v is None:
                v = jsonschema_rs.Draft6Validator(
                    {"$ref": f"#/definitions/{resource_type}", "definitions": _DEFS}
                )
                _VALIDATORS[resource_type] = v
    return v


# Required bindings on CodeableConcept elements (R4): element -> (code system, codes).
_CONDITION_CLINICAL = (
    "http://terminology.hl7.org/CodeSystem/condition-clinical",
    ("active", "recurrence", "relapse", "inactive", "remission", "resolved"),
)
_CONDITION_VERIFICATION = (
    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    ("unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"),
)
_ALLERGY_CLINICAL = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
    ("active", "inactive", "resolved"),
)
_ALLERGY_VERIFICATION = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
    ("unconfirmed", "confirmed", "refuted", "entered-in-error"),
)
CODEABLE_CONCEPT_BINDINGS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "Condition": {"clinicalStatus": _CONDITION_CLINICAL, "verificationStatus": _CONDITION_VERIFICATION},
    "AllergyIntolerance": {"clinicalStatus": _ALLERGY_CLINICAL, "verificationStatus": _ALLERGY_VERIFICATION},
}


# --- public entry point -------------------------------------------------------------------------


def validate(resource: object) -> list[ValidationIssue]:
    """Check one FHIR R4 resource. Empty list when valid. Never raises on any input."""
    try:
        if not isinstance(resource, dict):
            return [
                ValidationIssue(
                    "Resource",
                    f"A FHIR resource must be a JSON object with a resourceType, not {_json_kind(resource)}: "
                    "send one resource as a JSON object.",
                    "structure",
                )
            ]
        problem = _not_json(resource)
        if problem:
            root = resource.get("resourceType")
            path = root if isinstance(root, str) and root in SUPPORTED_TYPES else "Resource"
            return [ValidationIssue(path, problem, "structure")]
        return _validate(resource, None)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return [
            ValidationIssue(
                "Resource",
                f"The resource could not be validated ({exc.__class__.__name__}); check that it is "
                "well-formed FHIR JSON.",
                "invalid",
            )
        ]


# --- the layers ---------------------------------------------------------------------------------


def _validate(resource: dict[str, Any], root: str | None) -> list[ValidationIssue]:
    """``root`` is the path of a contained resource (``"Claim.contained[0]"``), None at top level."""
    rt = resource.get("resourceType")
    here = root or "Resource"
    if rt is None:
        return [
            ValidationIssue(
                f"{here}.resourceType",
                f'{here} has no resourceType: add "resourceType" naming the kind of resource '
                '(e.g. "Patient").',
                "required",
            )
        ]
    if not isinstance(rt, str):
        return [
            ValidationIssue(
                f"{here}.resourceType",
                f'{here}.resourceType must be a string naming the kind of resource (e.g. "Patient"), '
                f"not {_json_kind(rt)}.",
                "structure",
            )
        ]
    if rt not in SUPPORTED_TYPES:
        if rt in _ALL_RESOURCE_TYPES:
            problem = f"{rt} resources are not stored by Chartkeeper"
        else:
            problem = f"'{_short(rt)}' is not a FHIR R4 resource type{_did_you_mean(rt, _ALL_RESOURCE_TYPES)}"
        return [
            ValidationIssue(
                f"{here}.resourceType",
                f"{here}.resourceType: {problem}; use one of {', '.join(sorted(SUPPORTED_TYPES))}.",
                "not-supported",
            )
        ]
    base = root or rt
    validator = _validator(rt)
    issues = [] if validator.is_valid(resource) else _translate(validator.iter_errors(resource), base, rt)

    contained = resource.get("contained")
    if isinstance(contained, list):
        issues.extend(_check_contained(contained, base, nested=root is not None))
    bindings = CODEABLE_CONCEPT_BINDINGS.get(rt)
    if bindings:
        for element, (system, codes) in bindings.items():
            value = resource.get(element)
            if isinstance(value, dict):
                issues.extend(_check_binding(value, f"{base}.{element}", system, codes))
    if len(issues) > MAX_ISSUES:
        issues = issues[:MAX_ISSUES]
        issues.append(ValidationIssue(base, "Further problems are not listed: fix those above first."))
    return issues


def _check_contained(contained: list[Any], base: str, nested: bool) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    if nested:
        return [
            ValidationIssue(
                f"{base}.contained",
                f"{base} is itself a contained resource and may not contain resources (dom-2): "
                "move these into the containing resource.",
                "invalid",
            )
        ]
    for i, item in enumerate(contained):
        if not isinstance(item, dict):
            continue  # the schema has reported it
        path = f"{base}.contained[{i}]"
        issues.extend(_validate(item, path))
        meta = item.get("meta")
        if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
            issues.append(
                ValidationIssue(
                    f"{path}.meta",
                    f"{path} is a contained resource and may not have meta.versionId or meta.lastUpdated "
                    "(dom-4): remove them.",
                    "invalid",
                )
            )
    return issues


def _check_binding(
    concept: dict[str, Any], path: str, system: str, codes: tuple[str, ...]
) -> list[ValidationIssue]:
    codings = concept.get("coding")
    allowed = ", ".join(codes)
    found = False
    issues: list[ValidationIssue] = []
    if isinstance(codings, list):
        for j, coding in enumerate(codings):
            if not isinstance(coding, dict) or coding.get("system") != system:
                continue
            found = True
            code = coding.get("code")
            if isinstance(code, str) and code not in codes:
                issues.append(
                    ValidationIssue(
                        f"{path}.coding[{j}].code",
                        f"{path}.coding[{j}].code '{_short(code)}' is not a code of {system}: "
                        f"use one of {allowed}.",
                        "code-invalid",
                    )
                )
            elif code is None:
                issues.append(
                    ValidationIssue(
                        f"{path}.coding[{j}].code",
                        f"{path}.coding[{j}] names {system} but has no code: add one of {allowed}.",
                        "required",
                    )
                )
    if not found:
        issues.append(
            ValidationIssue(
                path,
                f"{path} has a required binding: add a coding with system {system} and one of the codes "
                f"{allowed}.",
                "code-invalid",
            )
        )
    return issues


def _not_json(resource: dict[str, Any]) -> str | None:
    """A sentence saying why ``resource`` is not JSON data, or None.

    orjson refuses exactly what jsonschema-rs cannot take or would crash on (nesting deeper than 254
    levels, sets, bytes, non-string keys, integers beyond 64 bits, lone surrogates) at ~1 us a resource.
    """
    try:
        orjson.dumps(resource)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        text = str(exc)
        if "Recursion" in text:
            reason = "it nests deeper than 254 levels"
        elif "64-bit" in text:
            reason = "it holds an integer too large for JSON numbers (beyond 64 bits)"
        elif "key must be str" in text:
            reason = "an object in it has a key that is not a string"
        elif "UTF-8" in text:
            reason = "a string in it is not valid Unicode (lone surrogate)"
        elif "not JSON serializable" in text:
            reason = f"it holds a value of type {text.rsplit(':', 1)[-1].strip()}"
        else:
            reason = "it cannot be written as JSON"
        return (
            f"The resource is not valid JSON data: {reason}. Send plain JSON objects, arrays, strings, "
            "numbers, booleans and null."
        )
    return None


# --- turning schema errors into issues ------------------------------------------------------------


def _translate(errors: Iterable[Any], base: str, resource_type: str) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        for issue in _issues_for(error, base, resource_type):
            key = (issue.path, issue.message)
            if key not in seen:
                seen.add(key)
                issues.append(issue)
        if len(issues) > MAX_ISSUES:
            break
    return issues


def _path(base: str, parts: Iterable[str | int]) -> str:
    out = [base]
    for p in parts:
        out.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(out)


def _issues_for(error: Any, base: str, resource_type: str) -> list[ValidationIssue]:
    kind = error.kind
    keyword = kind.name
    ipath = list(error.instance_path)
    spath = list(error.schema_path)
    where = _path(base, ipath)
    if len(spath) >= 2 and spath[0] == "definitions":
        defn, rest = str(spath[1]), spath[2:]
    else:
        defn, rest = resource_type, spath
    element = str(ipath[-1]) if ipath and isinstance(ipath[-1], str) else None

    if keyword == "additionalProperties":
        out = []
        for name in list(kind.unexpected)[: MAX_ISSUES + 1]:
            out.append(
                ValidationIssue(
                    f"{where}.{name}",
                    f"{where}.{name} is not an element of {_display(defn)}: remove it or correct the "
                    f"name{_did_you_mean(name, _element_names(defn))} (element names are case-sensitive).",
                    "structure",
                )
            )
        return out

    if keyword == "required":
        prop = str(kind.property)
        card = _cardinality(defn, prop)
        return [
            ValidationIssue(
                f"{where}.{prop}",
                f"{where}.{prop} is required{card} but missing: add it.",
                "required",
            )
        ]

    if keyword == "anyOf" and len(rest) >= 2 and rest[0] == "allOf":
        node = _DEFS.get(defn, {}).get("allOf", [])
        rule = node[rest[1]] if isinstance(rest[1], int) and rest[1] < len(node) else {}
        req = rule.get("x-required")
        nulls = rule.get("x-null-needs")
        if nulls:
            return [
                ValidationIssue(
                    f"{where}.{nulls}",
                    f"{where}.{nulls} has a null item, which FHIR allows only as a place-holder for "
                    f"extensions given in _{nulls}: remove the null or add _{nulls}.",
                    "structure",
                )
            ]
        if req:
            if req.endswith("[x]"):
                members = _CHOICES.get(defn, {}).get(req, [])
                return [
                    ValidationIssue(
                        f"{where}.{req}",
                        f"{where}.{req} is required but missing: add one of {', '.join(members)}.",
                        "required",
                    )
                ]
            card = _cardinality(defn, req)
            return [
                ValidationIssue(
                    f"{where}.{req}",
                    f"{where}.{req} is required{card} but missing: add it.",
                    "required",
                )
            ]

    if len(rest) >= 4 and rest[0] == "dependencies":
        # {"valueString": {"properties": {"valueBoolean": false, ...}}}: two types of one choice.
        first, second = str(rest[1]), str(rest[3]).lstrip("_")
        obj = _path(base, ipath[:-1])
        group = next((g for g, m in _CHOICES.get(defn, {}).items() if first in m), "value[x]")
        pair = sorted((first, second))
        return [
            ValidationIssue(
                f"{obj}.{group}",
                f"{obj} has both {pair[0]} and {pair[1]}, but {group} takes exactly one type: "
                "keep one and remove the other.",
                "structure",
            )
        ]

    if keyword == "minItems":
        return [
            ValidationIssue(
                where,
                f"{where} is an empty array, and FHIR forbids empty elements: remove {element or 'it'} "
                "or give it at least one item.",
                "structure",
            )
        ]
    if keyword == "minProperties":
        return [
            ValidationIssue(
                where,
                f"{where} is an empty object, and FHIR forbids empty elements: remove it or fill it in.",
                "structure",
            )
        ]

    instance = error.instance
    if keyword == "type":
        return [_type_issue(where, defn, rest, instance, list(kind.types))]

    fhir_type = _fhir_type(defn, rest)
    if keyword in ("pattern", "minLength"):
        if instance == "":
            return [
                ValidationIssue(
                    where,
                    f"{where} is an empty string, and FHIR forbids empty values: remove the element or "
                    "give it a value.",
                    "value",
                )
            ]
        if defn == "Reference" and rest[:2] == ["properties", "reference"]:
            return [
                ValidationIssue(
                    where,
                    f"{where} '{_short(instance)}' is not a valid reference: use 'Type/id' (e.g. "
                    "'Patient/123'), 'Type/id/_history/version', 'urn:uuid:<uuid>', '#<contained id>' "
                    "or an absolute URL.",
                    "value",
                )
            ]
        if defn == "Money" and rest[:2] == ["properties", "currency"]:
            return [
                ValidationIssue(
                    where,
                    f"{where} '{_short(instance)}' is not an ISO 4217 currency code: use three capital "
                    "letters such as USD or EUR.",
                    "code-invalid",
                )
            ]
        hint = _format_hint(fhir_type)
        return [ValidationIssue(where, f"{where} is not a valid {fhir_type}: {hint}", "value")]

    if keyword == "enum":
        options = [str(o) for o in kind.options]
        if not isinstance(instance, str):
            return [_type_issue(where, defn, rest, instance, ["string"])]
        value = instance if isinstance(instance, str) else None
        hint = ""
        if value is not None:
            lowered = {o.lower(): o for o in options}
            if value.lower() in lowered:
                hint = f" (codes are case-sensitive: write '{lowered[value.lower()]}')"
        shown = f" '{_short(value)}'" if value is not None else ""
        return [
            ValidationIssue(
                where,
                f"{where}{shown} is not a permitted code{hint}: use one of {', '.join(options)}.",
                "code-invalid",
            )
        ]

    if keyword in ("minimum", "maximum"):
        return [ValidationIssue(where, f"{where} is out of range: {_format_hint(fhir_type)}", "value")]

    if keyword == "const":
        return [
            ValidationIssue(
                where,
                f'{where} does not match the resource type {defn}: set it to "{defn}".',
                "value",
            )
        ]

    return [
        ValidationIssue(
            where,
            f"{where} does not conform to the FHIR R4 definition of {_display(defn)} ({keyword}): "
            "check it against the specification.",
            "invalid",
        )
    ]


_TYPE_WORDS = {
    "boolean": "a JSON boolean (true or false, without quotes)",
    "integer": "a whole JSON number without quotes",
    "positiveInt": "a whole JSON number of 1 or more, without quotes",
    "unsignedInt": "a whole JSON number of 0 or more, without quotes",
    "decimal": "a JSON number without quotes",
}


def _type_issue(
    where: str, defn: str, rest: list[Any], instance: Any, expected: list[str]
) -> ValidationIssue:
    got = _json_kind(instance)
    if rest[:1] == ["properties"] and "array" in expected:
        # A repeating element given as a single value.
        prop = str(rest[1])
        _, _, fhir_type = _ELEMENTS.get(defn, {}).get(prop, ("0", "*", ""))
        what = f" of {fhir_type} values" if fhir_type and fhir_type != "Resource" else ""
        return ValidationIssue(
            where,
            f"{where} can repeat, so it must be a JSON array{what}, not {got}: put the value inside [ ].",
            "structure",
        )
    if rest[:3] == ["properties", "contained", "items"]:
        return ValidationIssue(
            where, f"{where} must be a resource (a JSON object with a resourceType), not {got}.", "structure"
        )
    fhir_type = _fhir_type(defn, rest)
    if isinstance(instance, list):
        keep = "remove the [ ]" if len(instance) == 1 else "give a single value"
        return ValidationIssue(
            where,
            f"{where} can occur only once, so it must be {_value_words(fhir_type, expected)}, "
            f"not an array: {keep}.",
            "structure",
        )
    fix = ""
    if fhir_type == "boolean" and isinstance(instance, str) and instance in ("true", "false"):
        fix = f": write {instance} without quotes"
    elif expected and expected[0] in ("integer", "number") and isinstance(instance, str):
        fix = ": write the number without quotes"
    elif "integer" in expected and isinstance(instance, float) and math.isfinite(instance):
        got = "a fraction"
        fix = ": use a whole number"
    elif instance is None:
        fix = ": give a value or remove the element"
    return ValidationIssue(
        where, f"{where} must be {_value_words(fhir_type, expected)}, not {got}{fix}.", "structure"
    )


def _value_words(fhir_type: str, expected: list[str]) -> str:
    if fhir_type in _TYPE_WORDS:
        return _TYPE_WORDS[fhir_type]
    if "object" in expected:
        return f"a JSON object ({_display(fhir_type)})" if fhir_type else "a JSON object"
    if "string" in expected:
        return f"a JSON string (a FHIR {fhir_type})" if fhir_type else "a JSON string"
    return f"a FHIR {fhir_type}"


def _fhir_type(defn: str, rest: list[Any]) -> str:
    """The FHIR type an error is about: the definition it sits in, or the element named in ``rest``."""
    if rest[:1] == ["properties"] and len(rest) >= 2:
        spec = _ELEMENTS.get(defn, {}).get(str(rest[1]))
        if spec:
            return spec[2]
    return defn.removesuffix("_or_null")


_FORMAT_HINTS = {
    "id": "use 1 to 64 characters from A-Z, a-z, 0-9, '-' and '.' (no spaces).",
    "date": "use YYYY, YYYY-MM or YYYY-MM-DD with a month and day that exist, e.g. 2020-02-29.",
    "dateTime": (
        "use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone (Z or +hh:mm), "
        "with a date that exists, e.g. 2020-02-29T13:45:00+01:00."
    ),
    "instant": "use YYYY-MM-DDThh:mm:ss with a time zone (Z or +hh:mm), e.g. 2020-02-29T13:45:00Z.",
    "time": "use hh:mm:ss (24-hour clock), e.g. 13:45:00.",
    "code": "use a code without leading, trailing or repeated spaces.",
    "uri": "use a URI without spaces.",
    "url": "use a URL without spaces.",
    "canonical": "use a canonical URL without spaces.",
    "oid": "use urn:oid: followed by a dotted number, e.g. urn:oid:2.16.840.1.113883.",
    "uuid": "use urn:uuid: followed by a UUID.",
    "base64Binary": "use base64-encoded data.",
    "xhtml": 'use an XHTML fragment starting with <div xmlns="http://www.w3.org/1999/xhtml">.',
    "integer": "use a whole number from -2147483648 to 2147483647.",
    "positiveInt": "use a whole number from 1 to 2147483647.",
    "unsignedInt": "use a whole number from 0 to 2147483647.",
}


def _format_hint(fhir_type: str) -> str:
    return _FORMAT_HINTS.get(fhir_type, f"see the FHIR R4 definition of {fhir_type}.")


def _cardinality(defn: str, prop: str) -> str:
    spec = _ELEMENTS.get(defn, {}).get(prop)
    if not spec:
        return ""
    mn, mx, fhir_type = spec
    if not fhir_type or "_" in fhir_type:  # a backbone element: its name says enough
        return f" ({mn}..{mx})"
    return f" ({mn}..{mx} {fhir_type})"


def _display(defn: str) -> str:
    """``Patient_Contact`` -> ``Patient.contact``; type names stay as they are."""
    name = defn.removesuffix("_or_null")
    if "_" in name:
        head, _, tail = name.partition("_")
        return f"{head}.{tail[:1].lower()}{tail[1:]}"
    return name


def _element_names(defn: str) -> list[str]:
    return list(_ELEMENTS.get(defn.removesuffix("_or_null"), {}))


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    cands = list(candidates)
    folded = {c.lower(): c for c in cands}
    if name.lower() in folded and folded[name.lower()] != name:
        return f" (did you mean '{folded[name.lower()]}'?)"
    close = difflib.get_close_matches(name, cands, n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "an empty string" if value == "" else "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
