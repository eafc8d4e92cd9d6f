"""Resource classes the controllers read and write, where lightkube's stock ones are stricter
than what API servers send.

lightkube's ReplicaSetStatus makes `replicas` required (the OpenAPI schema says so,
because Go always serializes it), so a ReplicaSet whose status is `{}` fails to
decode and would wedge the informer's watch. This subclass defaults it to 0; it is
otherwise the same resource (same URL, same kind).
"""

from __future__ import annotations

from typing import Optional

from lightkube.models.apps_v1 import ReplicaSetStatus as _RSStatus
from lightkube.resources import apps_v1


class ReplicaSetStatus(_RSStatus):
    replicas: int = 0


class ReplicaSet(apps_v1.ReplicaSet):
    status: Optional[ReplicaSetStatus] = None


Deployment = apps_v1.Deployment
