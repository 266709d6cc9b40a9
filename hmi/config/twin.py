"""[twin.<machine>]: the digital-twin model of a machine, its inputs and what it publishes.

One model per machine, chosen by `kind`. Each model reads named inputs (by default the tag
`<machine>.<input>`, or the tag its `[twin.<machine>.inputs]` names) and publishes derived
tags `<machine>.<output>`, declared here so that trends, the historian and `hmi
check-config` know them before the runtime starts. Advisories are published as boolean
tags `<machine>.advisory.<cause>` and as advisory events. docs/project-file.md documents
every key; docs/twin.md the models.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from hmi.config.base import Strict
from hmi.core.materials import MATERIALS
from hmi.core.tags import DataType, TagSpec

Problem = tuple[list[str | int], str]

# (signal, unit, datatype, description) of every derived tag, per kind.
Output = tuple[str, str, DataType, str]
F, B, INT = DataType.FLOAT, DataType.BOOL, DataType.INT


class TwinBase(Strict):
    """What every twin model has: its kind, input tag overrides and a switch."""

    INPUTS: ClassVar[tuple[str, ...]] = ()
    OPTIONAL_INPUTS: ClassVar[tuple[str, ...]] = ()
    OUTPUTS: ClassVar[tuple[Output, ...]] = ()
    ADVISORIES: ClassVar[tuple[str, ...]] = ()

    enabled: bool = True
    inputs: dict[str, str] = Field(default_factory=dict)  # input name -> tag; default <machine>.<input>

    def input_tags(self, machine: str) -> dict[str, str]:
        """Every input this model reads, mapped to its tag (optional ones only when they exist)."""
        tags = {name: self.inputs.get(name, f"{machine}.{name}") for name in self.INPUTS}
        for name in self.OPTIONAL_INPUTS:
            if name in self.inputs:
                tags[name] = self.inputs[name]
        return tags

    def derived_specs(self, machine: str) -> list[TagSpec]:
        specs = [
            TagSpec(f"{machine}.{signal}", unit, datatype, description)
            for signal, unit, datatype, description in self.OUTPUTS
        ]
        specs += [
            TagSpec(
                f"{machine}.advisory.{cause}",
                "",
                DataType.BOOL,
                f"Twin advisory: probable {cause.replace('_', ' ')}",
            )
            for cause in self.ADVISORIES
        ]
        return specs

    @property
    def kind_name(self) -> str:
        return str(getattr(self, "kind", ""))


class ThermalCompensationConfig(TwinBase):
    """CMM thermal compensation: L20 = L / (1 + α (T_part − 20 °C)), with its uncertainty."""

    INPUTS: ClassVar[tuple[str, ...]] = ("part_temperature", "measured_length")
    OPTIONAL_INPUTS: ClassVar[tuple[str, ...]] = ("part_id",)
    OUTPUTS: ClassVar[tuple[Output, ...]] = (
        ("length_compensated", "mm", F, "Measured length brought to 20 °C"),
        ("length_compensated_deviation", "µm", F, "Compensated length − nominal"),
        ("length_compensated_uncertainty", "µm", F, "Expanded uncertainty U of the compensated length"),
        ("pass_raw", "", B, "Within tolerance before compensation"),
        ("pass_compensated", "", B, "Within tolerance after compensation"),
        ("parts_judged", "", INT, "Parts judged since the runtime started"),
        ("parts_failed_raw", "", INT, "Parts out of tolerance before compensation"),
        ("parts_failed_compensated", "", INT, "Parts out of tolerance after compensation"),
        ("false_failures_avoided", "", INT, "Parts failed raw but in tolerance at 20 °C"),
        ("false_passes_avoided", "", INT, "Parts passed raw but out of tolerance at 20 °C"),
    )

    kind: Literal["thermal_compensation"]
    material: str | None = "aluminium_6061"  # a name from the material table (docs/twin.md)
    alpha_per_k: float | None = Field(default=None, gt=-1e-4, lt=1e-4)  # instead of a material
    alpha_uncertainty_per_k: float | None = Field(default=None, ge=0, lt=1e-4)
    nominal_mm: float = Field(gt=0)
    tolerance_um: float = Field(gt=0)  # symmetric: nominal ± tolerance
    temperature_uncertainty_k: float = Field(default=0.1, ge=0, le=10)  # standard uncertainty of T_part
    length_uncertainty_um: float = Field(default=0.0, ge=0, le=1000)  # of the raw measurement (probing)
    coverage_factor: float = Field(default=2.0, gt=0, le=5)
    decision_rule: Literal["simple", "guarded"] = "simple"  # guarded: pass only if |dev| + U <= tolerance

    @field_validator("material")
    @classmethod
    def _known_material(cls, value: str | None) -> str | None:
        if value is not None and value not in MATERIALS:
            known = ", ".join(MATERIALS)
            raise ValueError(f"unknown material {value!r} (known: {known}; or give alpha_per_k)")
        return value

    @model_validator(mode="after")
    def _alpha(self) -> ThermalCompensationConfig:
        if self.alpha_per_k is None and self.material is None:
            raise ValueError("give a material or alpha_per_k")
        return self

    @property
    def alpha(self) -> tuple[float, float]:
        """(α, standard uncertainty of α) per kelvin."""
        if self.alpha_per_k is not None:
            return self.alpha_per_k, self.alpha_uncertainty_per_k or 0.0
        material = MATERIALS[str(self.material)]
        u = material.alpha_uncertainty_per_k if self.alpha_uncertainty_per_k is None else self.alpha_uncertainty_per_k
        return material.alpha_per_k, u


class PumpCurve(Strict):
    """The pump's expected behaviour at rated speed; `hmi twin fit` fits these from a healthy period."""

    head_shutoff_m: float = Field(gt=0)  # H0: head at zero flow and rated speed
    head_k: float = Field(ge=0)  # H = H0·s² − k·Q², m per (m³/h)²
    flow_rated_m3h: float = Field(gt=0)  # flow at rated speed through the plant's system curve (Q ∝ n)
    suction_bar: float  # suction pressure at zero flow (vessel / tank pressure, gauge)
    suction_k: float = Field(default=0.0, ge=0)  # suction line loss, bar per (m³/h)²
    current_magnetising_a: float = Field(ge=0)  # no-load current (motor data sheet)
    current_active_a: float  # I_active = a·s² + b at the measured speed ratio s
    current_active_b: float = 0.0
    bearing_ambient_c: float = 25.0
    bearing_rise_k: float = Field(default=20.0, ge=0)  # bearing over ambient at rated speed (∝ s^1.5)
    bearing_tau_s: float = Field(default=600.0, gt=0)


class PumpDetection(Strict):
    """Anomaly detection: per speed band a median/MAD baseline of every feature, then rules."""

    speed_band_pct: float = Field(default=10.0, gt=0, le=50)  # operating regimes: bands of rated speed
    min_speed_pct: float = Field(default=20.0, ge=0, le=100)  # below this the pump counts as stopped
    settle_s: float = Field(default=30.0, ge=0, le=3600)  # after a speed change, before judging
    learn_s: float = Field(default=120.0, ge=10, le=86400)  # baseline learned over this long per regime
    adapt_tau_s: float = Field(default=4 * 3600.0, gt=0)  # slow follow-up of a healthy baseline
    z_limit: float = Field(default=6.0, gt=0)  # robust z beyond which a feature has left its baseline
    vibration_rise_pct: float = Field(default=10.0, gt=0)  # ... and at least this much for vibration
    vibration_trend_pct_per_min: float = Field(default=3.0, gt=0)  # "rising": a growing fault
    current_rise_pct: float = Field(default=4.0, gt=0)
    flow_drop_pct: float = Field(default=4.0, gt=0)
    suction_drop_bar: float = Field(default=0.15, gt=0)
    noise_ratio: float = Field(default=2.5, gt=1)  # pressure noise against its baseline
    bearing_rise_k: float = Field(default=1.5, gt=0)  # bearing temperature above the thermal model
    undervoltage_pct: float = Field(default=8.0, gt=0, lt=100)  # supply below rated by this much
    rated_voltage_v: float = Field(default=400.0, gt=0)


class CentrifugalPumpConfig(TwinBase):
    """Pump residuals (pump curve and affinity laws at the measured speed) and diagnosis."""

    INPUTS: ClassVar[tuple[str, ...]] = (
        "speed",
        "flow",
        "suction_pressure",
        "discharge_pressure",
        "motor_current",
        "vibration_rms",
        "bearing_temperature",
        "supply_voltage",
    )
    OUTPUTS: ClassVar[tuple[Output, ...]] = (
        ("expected_discharge_pressure", "bar", F, "Discharge pressure from the pump curve at the measured speed"),
        ("expected_flow", "m³/h", F, "Flow from the affinity laws at the measured speed"),
        ("expected_motor_current", "A", F, "Motor current at the measured speed"),
        ("residual_discharge_pressure", "bar", F, "Measured − expected discharge pressure"),
        ("residual_flow", "m³/h", F, "Measured − expected flow"),
        ("residual_motor_current", "A", F, "Measured − expected motor current"),
        ("residual_suction_pressure", "bar", F, "Measured − expected suction pressure"),
        ("residual_bearing_temperature", "K", F, "Bearing temperature above its thermal model"),
        ("anomaly_score", "", F, "Largest robust z of the features against their baseline"),
        ("regime", "", INT, "Operating regime: speed band (0 stopped, −1 settling or learning)"),
    )
    ADVISORIES: ClassVar[tuple[str, ...]] = (
        "cavitation",
        "blocked_suction",
        "bearing_wear",
        "misalignment",
        "undervoltage",
    )

    kind: Literal["centrifugal_pump"]
    rated_speed_rpm: float = Field(gt=0)
    density_kg_m3: float = Field(default=998.0, gt=0)
    curve: PumpCurve
    detection: PumpDetection = PumpDetection()
    bin_s: float = Field(default=1.0, gt=0, le=60)  # inputs are averaged over bins this long
    speed_setpoint_tag: str | None = None  # writable tag an advisory may recommend a new speed on


class CncToolHealthConfig(TwinBase):
    """Tool wear from the vibration in cut against the time in cut; spindle vibration out of cut."""

    INPUTS: ClassVar[tuple[str, ...]] = ("spindle_speed", "axis_z", "vibration_spindle")
    OPTIONAL_INPUTS: ClassVar[tuple[str, ...]] = ("feed_override",)
    OUTPUTS: ClassVar[tuple[Output, ...]] = (
        ("time_in_cut", "s", F, "Time in cut since the runtime started"),
        ("vibration_in_cut", "mm/s", F, "Mean spindle vibration over the last cut"),
        ("tool_wear", "", F, "Tool-wear indicator: rise of the in-cut vibration over a fresh tool's"),
        ("tool_life_remaining", "s", F, "Estimated time in cut until the wear limit"),
        ("spindle_vibration_idle", "mm/s", F, "Spindle vibration rotating out of cut"),
    )
    ADVISORIES: ClassVar[tuple[str, ...]] = ("tool_wear", "spindle")

    kind: Literal["cnc_tool_health"]
    cut_below_z_mm: float = 0.0  # in cut while axis_z is below this ...
    min_spindle_rpm: float = Field(default=1000.0, ge=0)  # ... and the spindle turns at least this fast
    wear_limit: float = Field(default=0.6, gt=0)  # indicator at which the tool is worn out
    warn_fraction: float = Field(default=0.5, gt=0, lt=1)  # warn at this fraction of the limit ...
    warn_remaining_s: float = Field(default=600.0, ge=0)  # ... or when this little time in cut is left
    baseline_cuts: int = Field(default=3, ge=1, le=100)  # cuts of a fresh tool that set its baseline
    min_cut_s: float = Field(default=10.0, gt=0)  # shorter cuts are not judged
    feed_band_pct: float = Field(default=10.0, gt=0, le=100)  # regimes: feed override bands
    spindle_rise_pct: float = Field(default=50.0, gt=0)
    bin_s: float = Field(default=1.0, gt=0, le=60)
    feed_override_tag: str | None = None  # writable tag an advisory may recommend a lower feed on


TwinConfig = Annotated[
    ThermalCompensationConfig | CentrifugalPumpConfig | CncToolHealthConfig, Field(discriminator="kind")
]


class TagFacts(Protocol):
    """What the twin checks read of a configured tag (hmi.config.models.TagConfig, which
    holds the twins: taking the Project here would make the two modules import each other)."""

    @property
    def datatype(self) -> DataType: ...
    @property
    def writable(self) -> bool: ...
    @property
    def range(self) -> tuple[float, float] | None: ...


def twin_problems(
    twins: Mapping[str, TwinConfig], machines: Collection[str], tags: Mapping[str, TagFacts]
) -> list[Problem]:
    """Cross-checks: machines, input tags, writable command tags, no clash with configured tags."""
    problems: list[Problem] = []
    for machine, twin in twins.items():
        where: list[str | int] = ["twin", machine]
        if machine not in machines:
            problems.append((where, f"machine {machine!r} is not defined under [machines.{machine}]"))
        allowed = set(twin.INPUTS) | set(twin.OPTIONAL_INPUTS)
        for name in twin.inputs:
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                problems.append(([*where, "inputs", name], f"unknown input {name!r} of {twin.kind_name} ({known})"))
        for name, tag in twin.input_tags(machine).items():
            if tag not in tags:
                key: list[str | int] = [*where, "inputs", name] if name in twin.inputs else [*where]
                problems.append(
                    (key, f"input {name!r} reads tag {tag!r}, which is not configured under [tags] (name another)")
                )
            elif tags[tag].datatype == DataType.STRING:
                problems.append(([*where, "inputs", name], f"input {name!r} needs a numeric tag ({tag} is a string)"))
        for key_name in ("speed_setpoint_tag", "feed_override_tag"):
            command_tag = getattr(twin, key_name, None)
            if command_tag is None:
                continue
            tag_config = tags.get(command_tag)
            if tag_config is None:
                problems.append(([*where, key_name], f"unknown tag {command_tag!r}"))
            elif not tag_config.writable or tag_config.range is None:
                problems.append(([*where, key_name], f"{command_tag} must be writable, with a range"))
        for spec in twin.derived_specs(machine):
            if spec.name in tags:
                problems.append(([*where], f"the model publishes {spec.name}, which [tags] configures as well"))
    return problems


def twin_tag_specs(twins: Mapping[str, TwinConfig]) -> list[TagSpec]:
    """The derived tags of every enabled model, machine by machine in file order."""
    return [spec for machine, twin in twins.items() if twin.enabled for spec in twin.derived_specs(machine)]
