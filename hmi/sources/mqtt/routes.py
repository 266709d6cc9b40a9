"""Topic routing: which subscription or tag address handles a topic, and what is subscribed.

A route is one way a topic is handled: a subscription of the project (json, value, status,
sparkplugb) or the tags addressed one by one on a topic. `RouteTable` is built once from the
project and looked up per message through a bounded cache (paho's thread).

Filters another one covers are not subscribed, so a broker that sends a copy per matching
subscription sends one, and each message is decoded once per route: of equal subscriptions
overlapping on a topic, the first one decodes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import paho.mqtt.client as paho

from hmi.config.connections import MqttAddress, MqttSubscription
from hmi.core.quality import Quality
from hmi.core.tags import TagSpec
from hmi.sources.mqtt.payload import compile_json_path, quality_map

TOPIC_CACHE_MAX = 10_000  # topics remembered per cache: a flood of distinct topics must not grow memory
_TEMPLATE_FIELD = re.compile(r"\{(\w+)(?:\[(\d+)\])?\}")


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic the filter `narrow` matches also matches `wide` (False when unsure)."""
    wl, nl = wide.split("/"), narrow.split("/")
    if wl[0] in ("+", "#") and nl[0].startswith("$"):
        return False  # wildcards at the first level do not match $SYS-like topics
    for i, level in enumerate(wl):
        if level == "#":
            return True
        if i >= len(nl) or nl[i] == "#" or (level != "+" and level != nl[i]):
            return False
    return len(nl) == len(wl)


def snake(name: str) -> str:
    """ "SpindleSpeed" -> "spindle_speed", "Axes/X" -> "axes_x", "CNC01" -> "cnc01"."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def render(template: str, topic_levels: list[str], **fields: str) -> str:
    """Fill a tag template: {topic[i]} is a topic level, other {names} come from `fields`."""

    def one(match: re.Match[str]) -> str:
        name, index = match.group(1), match.group(2)
        if index is not None:
            if name != "topic":
                raise KeyError(name)
            return topic_levels[int(index)]
        return fields[name]

    return _TEMPLATE_FIELD.sub(one, template)


@dataclass(slots=True)
class Route:
    """One way a topic is handled: a subscription of the project, or one tag's address."""

    kind: str  # json | value | sparkplugb | status | tag
    filter: str = ""
    sub: MqttSubscription | None = None
    seen: bool = False  # a message arrived since the last (re)subscription
    tags: list[tuple[int, tuple[str | int, ...] | None]] = field(default_factory=list)  # kind "tag"
    quality_map: dict[str, Quality] | None = None
    status_path: tuple[str | int, ...] | None = None
    # Routes with equal settings but the topic (and QoS) make the same samples: one per topic.
    same_as: str = ""


class RouteTable:
    """The routes of one connection, and the filters to subscribe at the broker (`filters`)."""

    def __init__(self, subscriptions: list[MqttSubscription], spec_by_id: Mapping[int, TagSpec]) -> None:
        self._exact: dict[str, list[Route]] = {}
        self._wild: list[tuple[str, Route]] = []
        self._topic_cache: dict[str, list[Route]] = {}
        self.filters: list[tuple[str, int]] = []
        self._build(subscriptions, spec_by_id)

    def _build(self, subs: list[MqttSubscription], spec_by_id: Mapping[int, TagSpec]) -> None:
        for sub in subs:
            same_as = repr(sub.model_dump(exclude={"topic", "qos"}))
            self.filters.append((sub.topic, sub.qos))
            if any(o is not sub and _redundant(sub, o, same_as) for o in subs):
                continue  # another subscription makes the same samples on every topic this one matches
            status_path = compile_json_path(sub.status_path) if sub.status_path else None
            route = Route(sub.format, sub.topic, sub, quality_map=quality_map(sub.quality_map), same_as=same_as)
            route.status_path = status_path
            self._add(sub.topic, route)
        by_topic: dict[str, Route] = {}
        for tag_id, spec in spec_by_id.items():
            if not spec.address:
                continue  # filled by a subscription's template
            path = MqttAddress.of(spec).json_path
            tag_route = by_topic.get(spec.address)
            if tag_route is None:
                tag_route = by_topic[spec.address] = Route("tag", spec.address, same_as=f"tag:{spec.address}")
                self._add(spec.address, tag_route)
                self.filters.append((spec.address, 0))
            tag_route.tags.append((tag_id, compile_json_path(str(path)) if path else None))
        self.filters = _broker_filters(self.filters)

    def _add(self, topic: str, route: Route) -> None:
        if "+" in topic or "#" in topic:
            self._wild.append((topic, route))
        else:
            self._exact.setdefault(topic, []).append(route)

    def routes_for(self, topic: str) -> list[Route]:
        """The routes that decode a message on `topic` (paho's thread, once per message)."""
        routes = self._topic_cache.get(topic)
        if routes is None:
            routes = list(self._exact.get(topic, ()))
            routes += [r for f, r in self._wild if paho.topic_matches_sub(f, topic)]
            if len(routes) > 1:  # equal subscriptions overlapping on this topic: the first one decodes
                kept: dict[str, Route] = {}
                routes = [kept.setdefault(r.same_as, r) for r in routes if r.same_as not in kept]
            if len(self._topic_cache) >= TOPIC_CACHE_MAX:
                self._topic_cache.clear()  # bounded: a flood of distinct topics must not grow memory
            self._topic_cache[topic] = routes
        return routes

    def all(self) -> list[Route]:
        return [r for routes in self._exact.values() for r in routes] + [r for _, r in self._wild]


def _redundant(sub: MqttSubscription, other: MqttSubscription, same_as: str) -> bool:
    """Whether `other` already makes every sample `sub` would (equal settings, a covering filter)."""
    if not filter_covers(other.topic, sub.topic) or repr(other.model_dump(exclude={"topic", "qos"})) != same_as:
        return False
    # Two filters covering each other (the same filter twice, or "#" and "+/#"): keep the first.
    return (
        not filter_covers(sub.topic, other.topic)
        or other.topic < sub.topic
        or (other.topic == sub.topic and id(other) < id(sub))
    )


def _broker_filters(filters: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The filters to subscribe: one per message path. An MQTT 5 broker (Mosquitto) delivers a
    message once per matching subscription, so a filter another one covers is left out, and
    the covering one takes the highest QoS of those it stands for."""
    qos: dict[str, int] = {}
    for topic, q in filters:
        qos[topic] = max(qos.get(topic, 0), q)

    def dropped(topic: str) -> bool:
        return any(
            other != topic and filter_covers(other, topic) and (not filter_covers(topic, other) or other < topic)
            for other in qos
        )

    kept = [t for t in qos if not dropped(t)]
    return [(t, max([qos[t]] + [q for o, q in qos.items() if o not in kept and filter_covers(t, o)])) for t in kept]
