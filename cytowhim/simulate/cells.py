"""Cell types of lysed whole blood: scatter, marker levels, and which populations they make up.

Levels are median fluorescence after compensation (linear units); each cell's value is
log-normal around it. Populations are named as in Table 1 of CLINICAL.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NEG, DIM, INT, POS, BRIGHT = 0.0, 700.0, 2500.0, 7000.0, 25000.0

# scatter class -> (FSC-A mean, FSC-A sd, SSC-A mean, SSC-A sd)
SCATTER = {
    "lymph": (62_000.0, 5_500.0, 11_000.0, 2_200.0),
    "mono": (98_000.0, 8_000.0, 42_000.0, 6_000.0),
    "neut": (115_000.0, 9_000.0, 120_000.0, 14_000.0),
    "eos": (108_000.0, 9_000.0, 165_000.0, 15_000.0),
    # cell types of the realistic preset only: basophils and plasmacytoid DCs scatter like large
    # lymphocytes (a little more SSC), myeloid DCs between lymphocytes and monocytes
    "baso": (66_000.0, 6_000.0, 17_000.0, 4_000.0),
    "pdc": (70_000.0, 6_500.0, 14_000.0, 3_000.0),
    "mdc": (84_000.0, 9_000.0, 26_000.0, 6_000.0),
}


@dataclass(frozen=True)
class CellType:
    name: str
    scatter: str  # key of SCATTER
    levels: dict[str, float] = field(default_factory=dict)  # marker -> median level (else NEG)

    def level(self, marker: str) -> float:
        return self.levels.get(marker, NEG)


def _t(
    name: str, coreceptor: str | None, ra: float, ccr7: float, cd62l: float, cd27: float
) -> CellType:
    levels = {
        "CD45": BRIGHT,
        "CD3": 9000.0,
        "CD45RA": ra,
        "CCR7": ccr7,
        "CD62L": cd62l,
        "CD27": cd27,
    }
    if coreceptor == "CD4":
        levels["CD4"] = POS
    elif coreceptor == "CD8":
        levels["CD8"] = BRIGHT
    return CellType(name, "lymph", levels)


def _nkt(name: str, coreceptor: str | None, ra: float, cd27: float) -> CellType:
    levels = {
        "CD45": BRIGHT,
        "CD3": 6_000.0,
        "CD56": 6_000.0,
        "CD16": DIM,
        "CD45RA": ra,
        "CD27": cd27,
    }
    if coreceptor == "CD4":
        levels["CD4"] = POS
    elif coreceptor == "CD8":
        levels["CD8"] = POS
    return CellType(name, "lymph", levels)


CELL_TYPES: dict[str, CellType] = {
    c.name: c
    for c in [
        _t("cd4_naive", "CD4", POS, INT, POS, POS),
        _t("cd4_temra", "CD4", POS, NEG, NEG, NEG),
        _t("cd4_cm", "CD4", NEG, INT, POS, POS),
        _t("cd4_em", "CD4", NEG, NEG, NEG, DIM),
        _t("cd4_tm", "CD4", NEG, INT, NEG, POS),  # CCR7+CD62L-: memory, neither CM nor EM
        _t("cd4_pm", "CD4", NEG, NEG, POS, POS),  # CCR7-CD62L+
        _t("cd8_naive", "CD8", POS, INT, POS, POS),
        _t("cd8_temra", "CD8", POS, NEG, NEG, NEG),
        _t("cd8_cm", "CD8", NEG, INT, POS, POS),
        _t("cd8_em", "CD8", NEG, NEG, NEG, DIM),
        _t("cd8_tm", "CD8", NEG, INT, NEG, POS),
        _t("cd8_pm", "CD8", NEG, NEG, POS, POS),
        _t("t_dn", None, POS, INT, POS, POS),
        CellType(
            "nk_bright",
            "lymph",
            {"CD45": BRIGHT, "CD56": 30_000.0, "CD16": DIM, "CD45RA": POS, "CD62L": POS},
        ),
        CellType(
            "nk_dim", "lymph", {"CD45": BRIGHT, "CD56": 5_000.0, "CD16": BRIGHT, "CD45RA": POS}
        ),
        CellType(
            "b_memory",
            "lymph",
            {"CD45": BRIGHT, "CD19": POS, "CD27": POS, "IgM": DIM, "HLA-DR": POS, "CD62L": POS},
        ),
        CellType(
            "b_transitional",
            "lymph",
            {
                "CD45": BRIGHT,
                "CD19": POS,
                "IgD": POS,
                "IgM": BRIGHT,
                "CD45RA": POS,
                "HLA-DR": POS,
                "CD62L": POS,
                "CCR7": INT,
            },
        ),
        CellType(
            "b_immature",
            "lymph",
            {"CD45": BRIGHT, "CD19": POS, "IgM": POS, "CD45RA": POS, "HLA-DR": POS},
        ),
        CellType(
            "b_igd_only",
            "lymph",
            {
                "CD45": BRIGHT,
                "CD19": POS,
                "IgD": POS,
                "CD45RA": POS,
                "HLA-DR": POS,
                "CD62L": POS,
                "CCR7": INT,
            },
        ),
        CellType(
            "mono_classical",
            "mono",
            {"CD45": 10_000.0, "CD14": 30_000.0, "CD4": DIM, "HLA-DR": POS},
        ),
        CellType(
            "mono_intermediate",
            "mono",
            {"CD45": 11_000.0, "CD14": 22_000.0, "CD16": POS, "CD4": DIM, "HLA-DR": BRIGHT},
        ),
        CellType(
            "mono_nonclassical",
            "mono",
            {"CD45": 11_000.0, "CD14": POS, "CD16": BRIGHT, "CD4": DIM, "HLA-DR": POS},
        ),
        CellType("neutrophil", "neut", {"CD45": INT, "CD16": BRIGHT, "CD14": 250.0}),
        CellType("eosinophil", "eos", {"CD45": 5_000.0}),
        # Cell types of the realistic preset (the whim-trial and healthy presets draw none).
        # NKT cells: CD3+CD56+, mostly CD8+ or double negative, effector memory or TEMRA-like;
        # they are T cells (CD3+) and never NK cells (CD3-CD56+) in the populations below.
        _nkt("nkt_cd4", "CD4", NEG, DIM),
        _nkt("nkt_cd8", "CD8", NEG, DIM),
        _nkt("nkt_cd8_ra", "CD8", POS, NEG),
        _nkt("nkt_dn", None, POS, NEG),
        # CD56- CD16+ NK cells: NK cells, but outside the CD3-CD56+ NK population
        CellType(
            "nk_cd56neg",
            "lymph",
            {"CD45": BRIGHT, "CD16": BRIGHT, "CD45RA": POS, "CD8": DIM},
        ),
        # other lymphocytes (innate lymphoid cells, precursors): CD3-CD19-CD56-CD16-
        CellType(
            "lymph_other",
            "lymph",
            {
                "CD45": BRIGHT,
                "CD45RA": DIM,
                "CCR7": INT,
                "CD62L": POS,
                "CD27": POS,
                "HLA-DR": DIM,
                "CD127": POS,
            },
        ),
        CellType(
            "basophil",
            "baso",
            {"CD45": 3_000.0, "CD123": BRIGHT, "CD38": POS, "CD45RA": DIM},
        ),
        CellType(
            "pdc",
            "pdc",
            {
                "CD45": 8_000.0,
                "HLA-DR": POS,
                "CD123": BRIGHT,
                "CD4": DIM,
                "CD45RA": POS,
                "CD62L": POS,
            },
        ),
        CellType(
            "mdc",
            "mdc",
            {"CD45": 10_000.0, "HLA-DR": BRIGHT, "CD11c": BRIGHT, "CD4": DIM, "CD14": 250.0},
        ),
    ]
}

CD4_T = ("cd4_naive", "cd4_temra", "cd4_cm", "cd4_em", "cd4_tm", "cd4_pm")
CD8_T = tuple(n.replace("cd4", "cd8") for n in CD4_T)
NK = ("nk_bright", "nk_dim")
B = ("b_memory", "b_transitional", "b_immature", "b_igd_only")
MONO = ("mono_classical", "mono_intermediate", "mono_nonclassical")
LYMPH = (*CD4_T, *CD8_T, "t_dn", *NK, *B)
# realistic preset only: NKT cells (T cells), CD56- NK and other non-T/B/NK lymphocytes, and
# non-lymphocytes that are none of the above (basophils, dendritic cells)
NKT = ("nkt_cd4", "nkt_cd8", "nkt_cd8_ra", "nkt_dn")
NON_TBNK = ("nk_cd56neg", "lymph_other")
LYMPHOID = (*LYMPH, *NKT, *NON_TBNK)
OTHER_LEUKOCYTES = ("basophil", "pdc", "mdc")
T_CELLS = (*CD4_T, *CD8_T, "t_dn", *NKT)
CD4_ALL = (*CD4_T, "nkt_cd4")  # CD3+CD4+CD8-, as the CD4/CD8 quadrant of T cells gates them
CD8_ALL = (*CD8_T, "nkt_cd8", "nkt_cd8_ra")


@dataclass(frozen=True)
class PopulationDef:
    """A population as the set of cell types in it, its CBC base, and the markers a tube needs."""

    name: str
    cells: tuple[str, ...]
    base: str  # lymphocytes | monocytes | neutrophils | CD45+
    markers: tuple[str, ...]


# The populations as the realistic preset's truth counts them (every cell type); POPULATIONS
# below restricts them to the cell types of the whim-trial and healthy presets.
REALISTIC_POPULATIONS: tuple[PopulationDef, ...] = (
    PopulationDef(
        "CD45+ leukocytes",
        (*LYMPHOID, *MONO, "neutrophil", "eosinophil", *OTHER_LEUKOCYTES),
        "CD45+",
        ("CD45",),
    ),
    PopulationDef("lymphocytes", LYMPHOID, "lymphocytes", ("CD45",)),
    PopulationDef("monocytes (scatter)", MONO, "monocytes", ("CD45",)),
    PopulationDef("granulocytes", ("neutrophil", "eosinophil"), "CD45+", ("CD45",)),
    PopulationDef("neutrophils", ("neutrophil",), "neutrophils", ("CD45", "CD16")),
    PopulationDef("T cells", T_CELLS, "lymphocytes", ("CD3",)),
    PopulationDef("CD4+ T cells", CD4_ALL, "lymphocytes", ("CD3", "CD4", "CD8")),
    PopulationDef("CD4 naive", CD4_T[:2], "lymphocytes", ("CD3", "CD4", "CD8", "CD45RA")),
    PopulationDef(
        "CD4 memory", (*CD4_T[2:], "nkt_cd4"), "lymphocytes", ("CD3", "CD4", "CD8", "CD45RA")
    ),
    PopulationDef(
        "CD4 central memory",
        ("cd4_cm",),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7", "CD62L"),
    ),
    PopulationDef(
        "CD4 effector memory",
        ("cd4_em", "nkt_cd4"),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7", "CD62L"),
    ),
    PopulationDef("CD8+ T cells", CD8_ALL, "lymphocytes", ("CD3", "CD4", "CD8")),
    PopulationDef(
        "CD8 naive", (*CD8_T[:2], "nkt_cd8_ra"), "lymphocytes", ("CD3", "CD4", "CD8", "CD45RA")
    ),
    PopulationDef(
        "CD8 memory", (*CD8_T[2:], "nkt_cd8"), "lymphocytes", ("CD3", "CD4", "CD8", "CD45RA")
    ),
    PopulationDef(
        "CD8 central memory",
        ("cd8_cm",),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7", "CD62L"),
    ),
    PopulationDef(
        "CD8 effector memory",
        ("cd8_em", "nkt_cd8"),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7", "CD62L"),
    ),
    PopulationDef("NK cells", NK, "lymphocytes", ("CD3", "CD56")),
    PopulationDef("B cells", B, "lymphocytes", ("CD19",)),
    PopulationDef("memory B cells", ("b_memory",), "lymphocytes", ("CD19", "CD27")),
    PopulationDef("CD27- B cells", B[1:], "lymphocytes", ("CD19", "CD27")),
    PopulationDef(
        "transitional B cells", ("b_transitional",), "lymphocytes", ("CD19", "CD27", "IgD", "IgM")
    ),
    PopulationDef(
        "immature B cells", ("b_immature",), "lymphocytes", ("CD19", "CD27", "IgD", "IgM")
    ),
    PopulationDef("monocytes", MONO, "monocytes", ("CD14",)),
    PopulationDef("classical monocytes", ("mono_classical",), "monocytes", ("CD14", "CD16")),
    PopulationDef("inflammatory monocytes", MONO[1:], "monocytes", ("CD14", "CD16")),
    # ICCS-style definitions, alongside (never instead of) the paper's populations above.
    # Naive = CD45RA+CCR7+, TEMRA = CD45RA+CCR7- (the paper's "naive" is CD45RA+ and holds both).
    PopulationDef(
        "CD4 naive (CD45RA+CCR7+)",
        ("cd4_naive",),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7"),
    ),
    PopulationDef(
        "CD4 TEMRA", ("cd4_temra",), "lymphocytes", ("CD3", "CD4", "CD8", "CD45RA", "CCR7")
    ),
    PopulationDef(
        "CD8 naive (CD45RA+CCR7+)",
        ("cd8_naive",),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7"),
    ),
    PopulationDef(
        "CD8 TEMRA",
        ("cd8_temra", "nkt_cd8_ra"),
        "lymphocytes",
        ("CD3", "CD4", "CD8", "CD45RA", "CCR7"),
    ),
    # Lymphocytes on CD45 vs SSC (CD45 bright, SSC low): an alternative to the FSC/SSC gate.
    PopulationDef("lymphocytes (CD45bright SSClow)", LYMPHOID, "lymphocytes", ("CD45",)),
    # Lineage dump (CD3-CD19-), and monocytes as CD14+ HLA-DR+ cells within it.
    PopulationDef(
        "lineage- leukocytes",
        tuple(n for n, c in CELL_TYPES.items() if c.level("CD3") == c.level("CD19") == NEG),
        "CD45+",
        ("CD45", "CD3", "CD19"),
    ),
    PopulationDef(
        "HLA-DR+ monocytes",
        tuple(m for m in MONO if CELL_TYPES[m].level("HLA-DR") > NEG),
        "monocytes",
        ("CD45", "CD3", "CD19", "CD14", "HLA-DR"),
    ),
)

KIND_CELL_TYPES = frozenset((*LYMPH, *MONO, "neutrophil", "eosinophil"))
# The populations of the whim-trial and healthy presets, whose specimens hold none of the
# realistic preset's extra cell types: the same definitions, restricted to their cell types.
POPULATIONS: tuple[PopulationDef, ...] = tuple(
    PopulationDef(p.name, tuple(c for c in p.cells if c in KIND_CELL_TYPES), p.base, p.markers)
    for p in REALISTIC_POPULATIONS
)

# Populations of the realistic preset's extra cell types (truth.csv lists them for that preset
# only): NKT cells are T cells (CD3+) and not NK cells; CD56- NK cells and other lymphocytes are
# the lymphocytes outside T (CD3+), B (CD19+) and NK (CD3-CD56+), so lymphosum = 100 % minus them.
EXTRA_POPULATIONS: tuple[PopulationDef, ...] = (
    PopulationDef("NKT cells", NKT, "lymphocytes", ("CD3", "CD56")),
    PopulationDef("CD56- NK cells", ("nk_cd56neg",), "lymphocytes", ("CD3", "CD56", "CD16")),
    PopulationDef("non-T/B/NK lymphocytes", NON_TBNK, "lymphocytes", ("CD3", "CD19", "CD56")),
    PopulationDef("basophils", ("basophil",), "CD45+", ("CD45",)),
    PopulationDef(
        "dendritic cells", ("pdc", "mdc"), "CD45+", ("CD45", "CD3", "CD19", "CD14", "HLA-DR")
    ),
)
