"""Linear thermal expansion coefficients of workpiece materials, with their uncertainty.

A length measured at temperature T is brought to the ISO 1 reference temperature of 20 °C
by L20 = L / (1 + α·(T − 20 °C)). The values are mean coefficients between 20 °C and
100 °C; the uncertainty is the spread a real batch shows around the handbook value (alloy
composition, temper, rolling direction), given as a standard uncertainty.

Sources:
- Aluminium 6061-T6: 23.6e-6 /K, ASM Handbook vol. 2 (Properties of wrought aluminium
  alloys, 20–100 °C) and the Aluminum Association's data sheet; ±0.5e-6 between tempers.
- Aluminium 7075-T6: 23.4e-6 /K, ASM Handbook vol. 2.
- Steel (plain carbon, C45 / AISI 1045): 11.5e-6 /K, as ISO 3650 assumes for steel gauge
  blocks (11.5 ± 1.0)e-6 /K; the ±1.0e-6 there is read as a range, so u = 0.6e-6.
- Stainless steel 1.4301 / AISI 304: 17.3e-6 /K, EN 10088-1 annex (20–100 °C).
- Grey cast iron EN-GJL-250: 10.5e-6 /K, EN 1561 annex (20–200 °C: 10–11.5e-6 /K).
- Brass CuZn37 (C27200): 20.0e-6 /K, Deutsches Kupferinstitut data sheet CuZn37 (20–300 °C 20.2e-6).
- Invar 36 (Fe-Ni36, 1.3912): 1.2e-6 /K, ASM Handbook vol. 2 (Low-expansion alloys, 20–100 °C,
  0.6–2.0e-6 /K depending on heat treatment).
- Titanium Ti-6Al-4V: 8.6e-6 /K, ASM Handbook vol. 2.
- Copper Cu-ETP: 16.8e-6 /K, Deutsches Kupferinstitut data sheet Cu-ETP.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_C = 20.0  # ISO 1: the reference temperature for geometrical product specifications


@dataclass(frozen=True, slots=True)
class Material:
    name: str
    label: str
    alpha_per_k: float  # mean linear expansion coefficient, 20–100 °C
    alpha_uncertainty_per_k: float  # standard uncertainty of alpha


MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material("aluminium_6061", "Aluminium 6061-T6", 23.6e-6, 0.5e-6),
        Material("aluminium_7075", "Aluminium 7075-T6", 23.4e-6, 0.5e-6),
        Material("steel", "Steel C45 / 1045", 11.5e-6, 0.6e-6),
        Material("stainless_304", "Stainless steel 1.4301 / 304", 17.3e-6, 0.6e-6),
        Material("cast_iron", "Grey cast iron EN-GJL-250", 10.5e-6, 0.6e-6),
        Material("brass", "Brass CuZn37", 20.0e-6, 0.6e-6),
        Material("invar", "Invar 36", 1.2e-6, 0.4e-6),
        Material("titanium_6al4v", "Titanium Ti-6Al-4V", 8.6e-6, 0.4e-6),
        Material("copper", "Copper Cu-ETP", 16.8e-6, 0.4e-6),
    )
}
