"""Strategic merge patch against the behaviour apimachinery's strategicpatch tests pin down.

The cases use a schema shaped like apimachinery's test type (a struct whose
lists merge by "name" or by value, a replaced list, a map, retainKeys fields), so
every rule is exercised independently of any Kubernetes kind.
"""

from __future__ import annotations

import pytest
import yaml

from kubesvc.objects.patch import _SMPError, strategic_merge


def _item_schema() -> dict:
    node: dict = {"type": "object", "properties": {
        "name": {"type": "string"}, "value": {"type": "string"}, "other": {"type": "string"},
        "mergingIntList": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
        "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
        "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
    }}
    props = node["properties"]
    props["mergingList"] = {"type": "array", "items": node, "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-patch-merge-key": "name"}
    props["nonMergingList"] = {"type": "array", "items": node}
    props["retainKeysMergingList"] = {"type": "array", "items": node, "x-kubernetes-patch-merge-key": "name",
                                      "x-kubernetes-patch-strategy": "merge,retainKeys"}
    props["retainKeysMap"] = {"type": "object", "x-kubernetes-patch-strategy": "retainKeys", "properties": {
        "name": {"type": "string"}, "value": {"type": "string"}, "other": {"type": "string"},
        "mergingList": props["mergingList"], "nonMergingList": props["nonMergingList"],
        "mergingIntList": props["mergingIntList"], "simpleMap": props["simpleMap"]}}
    props["replacingItem"] = {"type": "object", "x-kubernetes-patch-strategy": "replace"}
    return node


SCHEMA = _item_schema()

# (description, original, patch, expected)
CASES = yaml.safe_load("""
- [unique scalars when merging lists, {mergingIntList: [1, 2]}, {mergingIntList: [2, 3]}, {mergingIntList: [1, 2, 3]}]
- [delete map from nested map, {simpleMap: {key1: "1", key2: "1"}}, {simpleMap: {$patch: delete}}, {simpleMap: {}}]
- [delete all items from merging list, {mergingList: [{name: 1}, {name: 2}]}, {mergingList: [{$patch: replace}]},
   {mergingList: []}]
- [merge empty merging lists, {mergingList: []}, {mergingList: []}, {mergingList: []}]
- [delete all keys from map, {name: 1, value: 1}, {$patch: replace}, {}]
- [add key and delete all keys from map, {name: 1, value: 1}, {other: a, $patch: replace}, {other: a}]
- [a delete directive removes every entry with that key,
   {mergingList: [{name: 1}, {name: 1}, {name: 2, value: a}, {name: 3}, {name: 3}]},
   {mergingList: [{name: 1, $patch: delete}, {name: 3, $patch: delete}]},
   {mergingList: [{name: 2, value: a}]}]
- [retainKeys map can add a field without the directive, {retainKeysMap: {name: foo}},
   {retainKeysMap: {value: bar}}, {retainKeysMap: {name: foo, value: bar}}]
- [retainKeys map can delete a field without the directive, {retainKeysMap: {name: foo, value: a}},
   {retainKeysMap: {value: null}}, {retainKeysMap: {name: foo}}]
- [retainKeys directive clears what it does not list, {retainKeysMap: {name: foo, value: a, other: b}},
   {retainKeysMap: {$retainKeys: [name, other], other: c}}, {retainKeysMap: {name: foo, other: c}}]
- [retainKeys list can change a field, {retainKeysMergingList: [{name: bar}, {name: foo, value: a}]},
   {retainKeysMergingList: [{name: foo, value: b}]}, {retainKeysMergingList: [{name: bar}, {name: foo, value: b}]}]
- [preserve the order from the patch in a merging list,
   {mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]},
   {mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, other: x}]},
   {mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, value: b, other: x}]}]
- [server-only items keep their place before patched ones,
   {mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]},
   {mergingList: [{name: 3, value: c}, {name: 1, value: a}]},
   {mergingList: [{name: 2, value: b}, {name: 3, value: c}, {name: 1, value: a}]}]
- [preserve the order from the patch in a merging int list, {mergingIntList: [1, 2, 3]}, {mergingIntList: [3, 1]},
   {mergingIntList: [2, 3, 1]}]
- [setElementOrder names an item missing from the list, {mergingList: [{name: 1}, {name: 3}]},
   {"$setElementOrder/mergingList": [{name: 3}, {name: 2}, {name: 1}],
    mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]},
   {mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}]
- [setElementOrder alone reorders an int list, {mergingIntList: [1, 3]},
   {"$setElementOrder/mergingIntList": [3, 2, 1]}, {mergingIntList: [3, 1]}]
- [delete items in lists of scalars, {mergingIntList: [1, 2, 3, 4]},
   {"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]},
   {mergingIntList: [1, 2, 4]}]
- [delete all duplicates in lists of scalars, {mergingIntList: [1, 2, 3, 3, 4]},
   {"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]},
   {mergingIntList: [1, 2, 4]}]
- [merge lists of maps with an order, {mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]},
   {"$setElementOrder/mergingList": [{name: 4}, {name: 1}, {name: 2}, {name: 3}],
    mergingList: [{name: 4, value: 4}, {name: 3, value: 3}]},
   {mergingList: [{name: 4, value: 4}, {name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]}]
- [replace list of scalars, {nonMergingIntList: [1, 4]}, {nonMergingIntList: [2, 3]}, {nonMergingIntList: [2, 3]}]
- [null deletes fields and nested nulls are not stored, {name: a, other: a}, {name: 1, value: 1, other: null},
   {name: 1, value: 1}]
- [replace strategy takes the patch value, {replacingItem: {a: 1, b: 2}}, {replacingItem: {c: 3}},
   {replacingItem: {c: 3}}]
- [nested merging lists merge by key at every level,
   {mergingList: [{name: 1, mergingList: [{name: a, value: x}]}]},
   {mergingList: [{name: 1, mergingList: [{name: b}]}]},
   {mergingList: [{name: 1, mergingList: [{name: b}, {name: a, value: x}]}]}]
""")


@pytest.mark.parametrize("desc,original,patch,expected", CASES, ids=[c[0] for c in CASES])
def test_apimachinery_cases(desc, original, patch, expected):
    assert strategic_merge(original, patch, SCHEMA) == expected


@pytest.mark.parametrize("original,patch,fragment", [
    ({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]},
     {"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
      "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}, "doesn't match"),
    ({"mergingIntList": [1, 3, 2]},
     {"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}, "doesn't match"),
    ({"mergingList": [{"name": 1, "value": "a"}]}, {"mergingList": [{"value": "b"}]},
     "does not contain declared merge key"),
    ({"mergingList": [{"name": 1}]}, {"mergingList": [{"name": 1, "$patch": "merge"}]},
     "merging lists cannot yet be specified in the patch"),
])
def test_apimachinery_error_cases(original, patch, fragment):
    with pytest.raises(_SMPError) as e:
        strategic_merge(original, patch, SCHEMA)
    assert fragment in e.value.message
