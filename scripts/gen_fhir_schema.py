#!/usr/bin/env python3
"""Generate ``src/chartkeeper/fhir/schema/r4-subset.schema.json.gz`` from HL7's FHIR R4 JSON schema.

Usage::

    .venv/bin/python scripts/gen_fhir_schema.py [path/to/fhir.schema.json.gz]

The input defaults to ``../shared/data/fhir/fhir.schema.json.gz`` (HL7's official FHIR R4 4.0 JSON
schema, published under CC0). The output is a draft-06 JSON schema that

* holds only the definitions reachable from the resource types the store accepts
  (``SUPPORTED_TYPES``), without descriptions;
* adds what HL7's schema cannot say or leaves out, so that one jsonschema-rs pass checks it:

  - every complex type says ``"type": "object"`` and ``minProperties: 1`` (an array or a string where
    an object belongs is an error, and so is ``{}``);
  - every repeating element says ``minItems: 1`` (FHIR forbids empty arrays);
  - strings must be non-empty; ``integer``/``positiveInt``/``unsignedInt`` are whole numbers in their
    32-bit ranges (HL7's ``pattern`` on numbers checks nothing);
  - ``date``, ``dateTime`` and ``instant`` accept only days that exist (30 April, 29 February in
    leap years only);
  - ``Reference.reference`` must be ``Type/id``, ``Type/id/_history/vid``, ``urn:uuid:<uuid>``,
    ``urn:oid:<oid>``, ``#<contained id>`` or an absolute URL;
  - required elements: HL7's ``required`` lists (complex elements only), plus the required (min 1)
    primitive and choice elements of the R4 specification listed by hand in ``EXTRA_REQUIRED``
    below (a primitive may carry its value or only extensions in ``_element``, so it is required as
    ``element`` or ``_element``);
  - choice elements (``value[x]``): at most one type at once;
  - ``code`` elements bound *required* to a value set that HL7's schema does not inline
    (``EXTRA_CODES``);
  - ``contained`` items are only required to be objects: the validator checks each contained
    resource against its own definition (HL7 points them at all 146 resource types).

* carries, under ``"x-fhir"``, the compact element table the validator's messages use:
  per definition, per element, ``"<min>..<max> <type>"``; the required elements (``name[x]`` for a
  required choice); the choice groups; and the names of all R4 resource types.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "fhir" / "fhir.schema.json.gz"
TARGET = ROOT / "src" / "chartkeeper" / "fhir" / "schema" / "r4-subset.schema.json.gz"

# Keep in step with chartkeeper.fhir.validation.SUPPORTED_TYPES (the validator checks this at import).
SUPPORTED_TYPES = (
    "Patient Practitioner PractitionerRole Organization Location Encounter Condition Procedure "
    "Observation DiagnosticReport MedicationRequest MedicationStatement Medication AllergyIntolerance "
    "Immunization CarePlan CareTeam Goal DocumentReference Composition Claim ExplanationOfBenefit "
    "Coverage ImagingStudy Task Provenance Consent AuditEvent Device Specimen ServiceRequest "
    "Communication QuestionnaireResponse RelatedPerson Binary"
).split()

# Required (min 1) elements of FHIR R4 (4.0.1) that HL7's JSON schema does not require: primitives
# (whose value may sit in ``_element`` only) and choice elements ``name[x]``. Complex elements that
# HL7 already lists are not repeated here. Source: the R4 resource and datatype pages (cardinality
# column).
EXTRA_REQUIRED: dict[str, list[str]] = {
    "AuditEvent": ["recorded"],
    "AuditEvent_Agent": ["requestor"],
    "AuditEvent_Detail": ["type", "value[x]"],
    "Annotation": ["text"],
    "Binary": ["contentType"],
    "CarePlan": ["status", "intent"],
    "CarePlan_Detail": ["status"],
    "Claim": ["status", "use", "created"],
    "Claim_Accident": ["date"],
    "Claim_CareTeam": ["sequence"],
    "Claim_Diagnosis": ["sequence", "diagnosis[x]"],
    "Claim_Detail": ["sequence"],
    "Claim_Insurance": ["sequence", "focal"],
    "Claim_Item": ["sequence"],
    "Claim_Procedure": ["sequence", "procedure[x]"],
    "Claim_SubDetail": ["sequence"],
    "Claim_SupportingInfo": ["sequence"],
    "Communication": ["status"],
    "Communication_Payload": ["content[x]"],
    "Composition": ["status", "date", "title"],
    "Composition_Attester": ["mode"],
    "Composition_RelatesTo": ["code", "target[x]"],
    "Consent": ["status"],
    "Consent_Data": ["meaning"],
    "Consent_Verification": ["verified"],
    "Contributor": ["type", "name"],
    "Coverage": ["status"],
    "Coverage_Class": ["value"],
    "Coverage_CostToBeneficiary": ["value[x]"],
    "DataRequirement": ["type"],
    "DataRequirement_Sort": ["path", "direction"],
    "Device_DeviceName": ["name", "type"],
    "Device_Version": ["value"],
    "DiagnosticReport": ["status"],
    "DocumentReference": ["status"],
    "DocumentReference_RelatesTo": ["code"],
    "Encounter": ["status"],
    "Encounter_StatusHistory": ["status"],
    "ExplanationOfBenefit": ["status", "use", "created", "outcome"],
    "ExplanationOfBenefit_CareTeam": ["sequence"],
    "ExplanationOfBenefit_Detail": ["sequence"],
    "ExplanationOfBenefit_Diagnosis": ["sequence", "diagnosis[x]"],
    "ExplanationOfBenefit_Insurance": ["focal"],
    "ExplanationOfBenefit_Item": ["sequence"],
    "ExplanationOfBenefit_Procedure": ["sequence", "procedure[x]"],
    "ExplanationOfBenefit_SubDetail": ["sequence"],
    "ExplanationOfBenefit_SupportingInfo": ["sequence"],
    "Expression": ["language"],
    "Extension": ["url"],
    "Goal": ["lifecycleStatus"],
    "ImagingStudy": ["status"],
    "ImagingStudy_Instance": ["uid"],
    "ImagingStudy_Series": ["uid"],
    "Immunization": ["status", "occurrence[x]"],
    "Immunization_ProtocolApplied": ["doseNumber[x]"],
    "Location_Position": ["longitude", "latitude"],
    "Medication_Ingredient": ["item[x]"],
    "MedicationRequest": ["status", "intent", "medication[x]"],
    "MedicationRequest_Substitution": ["allowed[x]"],
    "MedicationStatement": ["status", "medication[x]"],
    "Narrative": ["status"],
    "Observation": ["status"],
    "ParameterDefinition": ["use", "type"],
    "Patient_Link": ["type"],
    "PractitionerRole_NotAvailable": ["description"],
    "Procedure": ["status"],
    "Provenance": ["recorded"],
    "Provenance_Entity": ["role"],
    "QuestionnaireResponse": ["status"],
    "QuestionnaireResponse_Item": ["linkId"],
    "RelatedArtifact": ["type"],
    "SampledData": ["period", "dimensions"],
    "ServiceRequest": ["status", "intent"],
    "Signature": ["when"],
    "Task": ["status", "intent"],
    "Task_Input": ["value[x]"],
    "Task_Output": ["value[x]"],
    "TriggerDefinition": ["type"],
    "UsageContext": ["value[x]"],
}

# ``code`` elements with a *required* binding in R4 whose codes HL7's schema does not inline
# (it inlines only value sets used by a single element). Codes from the R4 value sets named.
_REQUEST_STATUS = "draft active on-hold revoked completed entered-in-error unknown"
_EVENT_STATUS = "preparation in-progress not-done on-hold stopped completed entered-in-error unknown"
_REQUEST_PRIORITY = "routine urgent asap stat"
_FM_STATUS = "active cancelled draft entered-in-error"
_DAYS_OF_WEEK = "mon tue wed thu fri sat sun"
# definition -> element -> codes (space-separated), with the R4 value set's name.
EXTRA_CODES: dict[str, dict[str, str]] = {
    "CarePlan": {
        "status": _REQUEST_STATUS,  # request-status
        "intent": "proposal plan order option",  # care-plan-intent
    },
    "CarePlan_Detail": {
        # care-plan-activity-kind
        "kind": "Appointment CommunicationRequest DeviceRequest MedicationRequest NutritionOrder Task "
        "ServiceRequest VisionPrescription",
    },
    "Claim": {"status": _FM_STATUS},  # fm-status
    "Communication": {"status": _EVENT_STATUS, "priority": _REQUEST_PRIORITY},
    "Composition_RelatesTo": {"code": "replaces transforms signs appends"},  # document-relationship-type
    "Composition_Section": {"mode": "working snapshot changes"},  # list-mode
    "Coverage": {"status": _FM_STATUS},
    "DocumentReference": {"docStatus": "preliminary final amended entered-in-error"},  # composition-status
    "ExplanationOfBenefit": {
        "use": "claim preauthorization predetermination",  # claim-use
        "outcome": "queued complete error partial",  # remittance-outcome
    },
    "Immunization": {"status": "completed entered-in-error not-done"},  # immunization-status
    "Location_HoursOfOperation": {"daysOfWeek": _DAYS_OF_WEEK},  # days-of-week
    "Medication": {"status": "active inactive entered-in-error"},  # medication-status
    "MedicationRequest": {
        # medicationrequest-status, medicationrequest-intent, request-priority
        "status": "active on-hold cancelled completed entered-in-error stopped draft unknown",
        "intent": "proposal plan order original-order reflex-order filler-order instance-order option",
        "priority": _REQUEST_PRIORITY,
    },
    "MedicationStatement": {
        # medication-statement-status
        "status": "active completed entered-in-error intended stopped on-hold unknown not-taken",
    },
    "ParameterDefinition": {"use": "in out"},  # operation-parameter-use
    "PractitionerRole_AvailableTime": {"daysOfWeek": _DAYS_OF_WEEK},
    "Procedure": {"status": _EVENT_STATUS},
    "ServiceRequest": {
        "status": _REQUEST_STATUS,
        # request-intent
        "intent": "proposal plan directive order original-order reflex-order filler-order "
        "instance-order option",
        "priority": _REQUEST_PRIORITY,
    },
    "Task": {"priority": _REQUEST_PRIORITY},
    "Timing_Repeat": {"dayOfWeek": _DAYS_OF_WEEK},
}

# Enums in HL7's schema for bindings that are only *extensible* in R4: dropped (any code passes).
NOT_REQUIRED_ENUMS = {("Expression", "language")}

# --- primitive formats -------------------------------------------------------------------------
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][48]|[13579][26]|[2468]0)00)"
_MONTH_DAY = r"((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
_FULL_DATE = rf"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_PARTIAL_DATE = rf"{_YEAR}(-(0[1-9]|1[0-2]))?"
_TIME_TZ = (
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
_INT32 = {"minimum": -2147483648, "maximum": 2147483647}

PRIMITIVES: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", **_INT32},
    "positiveInt": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "unsignedInt": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "decimal": {"type": "number"},
    "string": {"type": "string", "minLength": 1},
    "markdown": {"type": "string", "minLength": 1},
    "xhtml": {"type": "string", "pattern": r"^\s*<div[\s>]"},
    "base64Binary": {"type": "string", "pattern": r"^(\s*([0-9a-zA-Z\+/=]){4}\s*)+$"},
    "uri": {"type": "string", "pattern": r"^\S+$"},
    "url": {"type": "string", "pattern": r"^\S+$"},
    "canonical": {"type": "string", "pattern": r"^\S+$"},
    "date": {"type": "string", "pattern": rf"^({_PARTIAL_DATE}|{_FULL_DATE})$"},
    "dateTime": {"type": "string", "pattern": rf"^({_PARTIAL_DATE}|{_FULL_DATE}({_TIME_TZ})?)$"},
    "instant": {"type": "string", "pattern": rf"^{_FULL_DATE}{_TIME_TZ}$"},
}
# ``code``, ``id``, ``oid``, ``uuid``, ``time`` keep HL7's patterns.

_ID = r"[A-Za-z0-9\-\.]{1,64}"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def reference_pattern(resource_types: list[str]) -> str:
    names = "|".join(sorted(resource_types))
    return (
        rf"^(#({_ID})?|urn:uuid:{_UUID}|urn:oid:[0-2](\.(0|[1-9][0-9]*))+"
        rf"|({names})/{_ID}(/_history/{_ID})?"
        r"|[A-Za-z][A-Za-z0-9+.\-]*://\S+)$"
    )


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.append(v.rsplit("/", 1)[-1])
            else:
                out.extend(_refs(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_refs(v))
    return out


def choice_groups(defs: dict[str, Any], name: str) -> dict[str, list[str]]:
    """``{"value": ["valueQuantity", ...]}``: properties named <prefix><TypeName> sharing a description."""
    type_names = {n[0].upper() + n[1:] for n in defs if "_" not in n}
    by_key: dict[tuple[str, str], list[str]] = {}
    for prop, spec in defs[name].get("properties", {}).items():
        if prop.startswith("_"):
            continue
        for i in range(1, len(prop)):
            if prop[i].isupper() and prop[i:] in type_names:
                by_key.setdefault((prop[:i], str(spec.get("description"))), []).append(prop)
                break
    return {prefix: members for (prefix, _), members in by_key.items() if len(members) > 1}


def build(source: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = source["definitions"]
    resource_types = [_ref_name(x) for x in defs["ResourceList"]["oneOf"]]
    all_resources = sorted(n for n in resource_types if n)
    missing = [t for t in SUPPORTED_TYPES if t not in defs]
    if missing:
        raise SystemExit(f"not in the source schema: {missing}")

    # Choice groups and the FHIR type of each choice member.
    choices = {name: choice_groups(defs, name) for name in defs if "properties" in defs[name]}
    member_type: dict[tuple[str, str], str] = {}
    lower = {n[0].upper() + n[1:]: n for n in defs if "_" not in n}
    for name, groups in choices.items():
        for prefix, members in groups.items():
            for m in members:
                member_type[(name, m)] = lower[m[len(prefix) :]]

    # Reachable definitions (contained resources are validated one by one, so not via ResourceList).
    reachable: set[str] = set()
    stack = list(SUPPORTED_TYPES)
    while stack:
        n = stack.pop()
        if n in reachable:
            continue
        reachable.add(n)
        for prop, spec in defs[n].get("properties", {}).items():
            if "pattern" in spec and (n, prop) in member_type:
                stack.append(member_type[(n, prop)])
        stack.extend(r for r in _refs(defs[n]) if r != "ResourceList")

    out_defs: dict[str, Any] = {}
    elements: dict[str, dict[str, str]] = {}
    choice_table: dict[str, dict[str, list[str]]] = {}
    required_table: dict[str, list[str]] = {}
    ref_pattern = reference_pattern(all_resources)
    primitive_names = {n for n in reachable if "properties" not in defs[n]}

    for name in sorted(reachable):
        src = defs[name]
        if name in primitive_names:
            if name in PRIMITIVES:
                out_defs[name] = dict(PRIMITIVES[name])
            else:
                out_defs[name] = {k: v for k, v in src.items() if k in ("type", "pattern")}
            continue

        groups = choices.get(name, {})
        if groups:
            choice_table[name] = {f"{p}[x]": m for p, m in groups.items()}
        props: dict[str, Any] = {}
        nullable_arrays: list[str] = []
        table_raw: dict[str, tuple[str, str]] = {}
        table: dict[str, str] = {}
        extra_codes = EXTRA_CODES.get(name, {})
        for prop, spec in src["properties"].items():
            fhir_type: str
            if prop == "resourceType":
                new: dict[str, Any] = {"const": spec["const"]}
                fhir_type = "code"
            elif prop == "contained":
                new = {"type": "array", "minItems": 1, "items": {"type": "object"}}
                fhir_type = "Resource"
            elif name == "Reference" and prop == "reference":
                new = {"type": "string", "pattern": ref_pattern}
                fhir_type = "string"
            elif name == "Money" and prop == "currency":
                new = {"type": "string", "pattern": "^[A-Z]{3}$"}  # ISO 4217 (required binding)
                fhir_type = "code"
            elif prop in extra_codes:
                item = {"enum": extra_codes[prop].split()}
                new = {"type": "array", "minItems": 1, "items": item} if "items" in spec else item
                fhir_type = "code"
            elif "items" in spec:
                item_src = spec["items"]
                ref = _ref_name(item_src)
                if ref is not None:
                    if prop.startswith("_"):
                        # _given: [null, {...}] lines extensions up with given's items.
                        item = {"$ref": "#/definitions/Element_or_null"}
                    elif ref in primitive_names:
                        # given: ["Ann", null] leaves a slot for an item that only has extensions.
                        item = {"$ref": f"#/definitions/{ref}_or_null"}
                        nullable_arrays.append(prop)
                    else:
                        item = {"$ref": f"#/definitions/{ref}"}
                    fhir_type = ref
                elif "enum" in item_src:
                    item = {"enum": item_src["enum"]}
                    fhir_type = "code"
                else:
                    raise SystemExit(f"unexpected item schema {name}.{prop}: {item_src}")
                new = {"type": "array", "minItems": 1, "items": item}
            elif "$ref" in spec:
                new = {"$ref": spec["$ref"]}
                fhir_type = _ref_name(spec) or ""
            elif "enum" in spec:
                if (name, prop) in NOT_REQUIRED_ENUMS:
                    new = {"$ref": "#/definitions/code"}
                else:
                    new = {"enum": spec["enum"]}
                fhir_type = "code"
            elif "pattern" in spec or "type" in spec:
                fhir_type = member_type[(name, prop)]
                new = {"$ref": f"#/definitions/{fhir_type}"}
            else:
                raise SystemExit(f"unexpected property schema {name}.{prop}: {spec}")
            props[prop] = new
            if not prop.startswith("_"):
                table_raw[prop] = ("*" if new.get("type") == "array" else "1", fhir_type)

        # Required elements.
        required = [r for r in src.get("required", []) if r in props and r != "resourceType"]
        all_of: list[dict[str, Any]] = []
        for element in EXTRA_REQUIRED.get(name, []):
            if element.endswith("[x]"):
                members = groups.get(element[:-3])
                if not members:
                    raise SystemExit(f"{name}.{element}: no such choice element")
                names = [m for mm in members for m in (mm, f"_{mm}") if m in props]
                all_of.append({"x-required": element, "anyOf": [{"required": [m]} for m in names]})
            elif element not in props:
                raise SystemExit(f"{name}.{element}: no such element")
            elif f"_{element}" in props:
                all_of.append(
                    {"x-required": element, "anyOf": [{"required": [element]}, {"required": [f"_{element}"]}]}
                )
            elif element not in required:
                required.append(element)
        must = set(required) | set(EXTRA_REQUIRED.get(name, []))
        if "resourceType" in src.get("required", []):
            must.add("resourceType")
        for prop, (max_, fhir_type) in list(table_raw.items()):
            table[prop] = f"{1 if prop in must else 0}..{max_} {fhir_type}"
        elements[name] = table
        if must:
            required_table[name] = sorted(must)
        if "resourceType" in src.get("required", []):
            required.insert(0, "resourceType")
        # A null item in a primitive array only holds a place for the extensions in _element.
        for prop in nullable_arrays:
            no_nulls = {"properties": {prop: {"items": {"not": {"type": "null"}}}}}
            all_of.append({"x-null-needs": prop, "anyOf": [{"required": [f"_{prop}"]}, no_nulls]})

        # At most one type per choice element.
        dependencies: dict[str, Any] = {}
        for members in groups.values():
            for m in members:
                others = [o for oo in members if oo != m for o in (oo, f"_{oo}") if o in props]
                dependencies[m] = {"properties": {o: False for o in others}}

        node: dict[str, Any] = {"type": "object"}
        if name not in SUPPORTED_TYPES:
            node["minProperties"] = 1
        node["properties"] = props
        node["additionalProperties"] = False
        if required:
            node["required"] = required
        if all_of:
            node["allOf"] = all_of
        if dependencies:
            node["dependencies"] = dependencies
        out_defs[name] = node

    # Nullable variants for items of primitive arrays and their _element twins.
    for name in sorted(primitive_names):
        variant = dict(out_defs[name])
        variant["type"] = [variant["type"], "null"]
        out_defs[f"{name}_or_null"] = variant
    element_or_null = dict(out_defs["Element"])
    element_or_null["type"] = ["object", "null"]
    out_defs["Element_or_null"] = element_or_null

    # Drop nullable variants nobody uses.
    used = set(_refs(out_defs))
    out_defs = {k: v for k, v in out_defs.items() if not k.endswith("_or_null") or k in used}

    return {
        "$comment": (
            "Generated from HL7's FHIR R4 (4.0) JSON schema (http://hl7.org/fhir/R4/fhir.schema.json.zip, "
            "CC0 public domain) by scripts/gen_fhir_schema.py: only the definitions reachable from the "
            "resource types Chartkeeper stores, with the checks HL7's schema lacks added. Do not edit."
        ),
        "$schema": "http://json-schema.org/draft-06/schema#",
        "x-fhir": {
            "fhirVersion": "4.0.1",
            "supported": sorted(SUPPORTED_TYPES),
            "resourceTypes": all_resources,
            "choices": choice_table,
            "required": required_table,
            "elements": elements,
        },
        "definitions": out_defs,
    }


def main(argv: list[str]) -> int:
    source_path = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    with gzip.open(source_path, "rb") as fh:
        source = orjson.loads(fh.read())
    result = build(source)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(result)
    # mtime=0 keeps the output byte-identical across runs.
    with open(TARGET, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write(data)
    n_defs = len(result["definitions"])
    print(f"wrote {TARGET.relative_to(ROOT)}: {n_defs} definitions, {len(data):,} bytes JSON")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
