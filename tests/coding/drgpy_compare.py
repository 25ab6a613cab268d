"""Second opinion: the same generated stays grouped by msdrg (through ``chartkeeper.coding.drg.group``)
and by drgpy, a separate implementation of the MS-DRG definitions, where both claim to apply.

drgpy has versions 36 to 43.1 but no 40.1 and no 44, and takes no age: cases are adults (age 50), with
no newborn (P, Z38) principal diagnoses, discharged between October 1, 2023 and September 30, 2026
(grouper 41.0 to 43.1 in both)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from chartkeeper.coding.case import CodedDiagnosis, CodedProcedure, CodingCase
from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.drg import DrgResult, group, grouper_version_for

START, END = date(2023, 10, 1), date(2026, 9, 30)


def drgpy_version(label: str) -> str:
    major, minor = label.split(".")
    return f"v{major}" if minor == "0" else f"v{major}.{minor}"


@dataclass
class Compared:
    case: CodingCase
    ours: DrgResult
    theirs: int
    drgpy_version: str

    @property
    def agree(self) -> bool:
        return self.ours.drg == self.theirs


def generate(n: int, seed: int = 2026) -> Iterator[tuple[CodingCase, str]]:
    from drgpy.msdrg import DRGEngine

    rng = random.Random(seed)
    engines: dict[str, DRGEngine] = {}
    pools: dict[str, tuple[list[str], list[str]]] = {}
    days = (END - START).days
    for i in range(n):
        on = START + timedelta(days=rng.randrange(days + 1))
        v = grouper_version_for(on)
        assert v is not None
        name = drgpy_version(v.label)
        if name not in engines:
            engines[name] = DRGEngine(version=name)
            dx = sorted(k for k, labels in engines[name].dxmap.items() if labels and len(k) >= 3)
            pr = sorted(k for k, labels in engines[name].prmap.items() if labels)
            pools[name] = (dx, pr)
        dx_pool, pr_pool = pools[name]
        pdx = rng.choice(dx_pool)
        while pdx[0] in "PVWXY" or pdx.startswith("Z38"):
            pdx = rng.choice(dx_pool)
        sdx = rng.sample(dx_pool, rng.choice((0, 1, 2, 3, 5, 8)))
        procs = rng.sample(pr_pool, rng.choice((0, 0, 0, 1, 1, 2, 3)))
        sex = rng.choice("MF")
        status = rng.choice(("01", "01", "01", "03", "06", "20"))
        case = CodingCase(
            encounter_id=f"cmp{i}", setting="inpatient", admit_date=on - timedelta(days=3), discharge_date=on,
            birth_date=date(on.year - 50, 1, 1), sex=sex, discharge_status=status,
            diagnoses=tuple(CodedDiagnosis(ICD10CMCode(c), "Y") for c in dict.fromkeys([pdx, *sdx])),
            procedures=tuple(CodedProcedure(ICD10PCSCode(p)) for p in procs),
        )
        yield case, name


def compare(n: int = 300, seed: int = 2026) -> list[Compared]:
    from drgpy.msdrg import DRGEngine

    engines: dict[str, DRGEngine] = {}
    out = []
    for case, name in generate(n, seed):
        eng = engines.get(name) or engines.setdefault(name, DRGEngine(version=name))
        theirs = eng.get_drg([str(d.code) for d in case.diagnoses], [str(p.code) for p in case.procedures],
                             gender=case.sex, is_alive=case.discharge_status != "20", poa=None,
                             discharge_status=case.discharge_status)
        out.append(Compared(case, group(case, with_edits=False), int(theirs), name))
    return out


if __name__ == "__main__":
    import sys

    res = compare(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
    agree = sum(r.agree for r in res)
    print(f"{agree}/{len(res)} agree ({agree / len(res):.1%})")
    for r in res:
        if not r.agree:
            c = r.case
            print(r.drgpy_version, "ours", r.ours.drg, r.ours.return_code, "drgpy", r.theirs, c.sex, c.discharge_status,
                  [str(d.code) for d in c.diagnoses], [str(p.code) for p in c.procedures])


def explain(r: Compared) -> str | None:
    """Why msdrg and drgpy disagree on a case, for the disagreements seen and understood; None otherwise."""
    ours, theirs = r.ours, r.theirs
    if ours.drg == 998:
        return "msdrg: principal diagnosis invalid as discharge diagnosis (DRG 998); drgpy has no such rule"
    if r.case.procedures and ours.mdc in (14, 17, 19, 20, 22, 23) and 981 <= theirs <= 989:
        return (f"MDC {ours.mdc} takes any O.R. procedure into its own surgical DRGs (or, for burns, keeps its DRG); "
                f"drgpy sends the procedure to the unrelated-O.R. DRGs 981-989")
    if (ours.mdc, r.case.sex) in ((12, "F"), (13, "M")):
        return (f"the principal diagnosis belongs to MDC {ours.mdc} but the patient's sex is {r.case.sex}: msdrg groups "
                f"by the diagnosis's MDC, drgpy routes it by the patient's sex")
    if ours.drg == 949 and theirs == 950:
        return "aftercare (949/950): the CC on the case counts in msdrg; drgpy's MDC 23 logic does not apply it"
    if theirs in (969, 970) and not any(str(d.code) in ("B20", "Z21") for d in r.case.diagnoses):
        return "drgpy grouped to the HIV DRGs 969/970 without an HIV diagnosis on the case"
    return None
