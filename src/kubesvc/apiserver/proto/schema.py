"""The Kubernetes protobuf messages kubesvc understands, with their public field numbers.

Field numbers are those of k8s.io/api and k8s.io/apimachinery ``generated.proto``
(go-to-protobuf names each field after its JSON name, so the name here is the JSON
key). Each package maps a message name to a space-separated list of fields::

    name=NUMBER[:TYPE][FLAGS]

TYPE is a scalar (``s`` string, ``i32``, ``i64``, ``b`` bool, ``y`` bytes), a map
(``map`` string→string, ``mapy`` string→bytes, ``mapq`` string→Quantity) or a
message name (``meta.ObjectMeta`` for another package, else the same package);
the default is ``s``. FLAGS:

``*``  repeated.
``?``  a Go pointer: JSON keeps it whenever it is set, zero included
       (``replicas: 0``, ``ready: false``).
``!``  a Go field without ``omitempty``: JSON keeps its zero value too.
``^``  an embedded Go struct: its fields are inlined into the parent's JSON.

Every other scalar is ``omitempty``: go-to-protobuf writes it even when zero, and
JSON would have left it out, so the decoder drops zero values of those.
"""

from __future__ import annotations

# package alias -> protobuf package name
PACKAGES: dict[str, str] = {
    "meta": "k8s.io.apimachinery.pkg.apis.meta.v1",
    "runtime": "k8s.io.apimachinery.pkg.runtime",
    "intstr": "k8s.io.apimachinery.pkg.util.intstr",
    "resource": "k8s.io.apimachinery.pkg.api.resource",
    "core": "k8s.io.api.core.v1",
    "apps": "k8s.io.api.apps.v1",
    "discovery": "k8s.io.api.discovery.v1",
    "coordination": "k8s.io.api.coordination.v1",
    "autoscaling": "k8s.io.api.autoscaling.v1",
}

RUNTIME = {
    "TypeMeta": "apiVersion=1 kind=2",
    "Unknown": "typeMeta=1:TypeMeta raw=2:y contentEncoding=3 contentType=4",
    "RawExtension": "raw=1:y",
}

INTSTR = {"IntOrString": "type=1:i64 intVal=2:i32 strVal=3"}

RESOURCE = {"Quantity": "string=1"}

META = {
    "Time": "seconds=1:i64 nanos=2:i32",
    "MicroTime": "seconds=1:i64 nanos=2:i32",
    "Duration": "duration=1:i64",
    "FieldsV1": "Raw=1:y",
    "ObjectMeta": (
        "name=1 generateName=2 namespace=3 selfLink=4 uid=5 resourceVersion=6 generation=7:i64 "
        "creationTimestamp=8:Time deletionTimestamp=9:Time deletionGracePeriodSeconds=10:i64? "
        "labels=11:map annotations=12:map ownerReferences=13:OwnerReference* finalizers=14:s* "
        "managedFields=17:ManagedFieldsEntry*"
    ),
    "OwnerReference": "kind=1! name=3! uid=4! apiVersion=5! controller=6:b? blockOwnerDeletion=7:b?",
    "ManagedFieldsEntry": "manager=1 operation=2 apiVersion=3 time=4:Time fieldsType=6 fieldsV1=7:FieldsV1 subresource=8",
    "ListMeta": "selfLink=1 resourceVersion=2 continue=3 remainingItemCount=4:i64?",
    "LabelSelector": "matchLabels=1:map matchExpressions=2:LabelSelectorRequirement*",
    "LabelSelectorRequirement": "key=1! operator=2! values=3:s*",
    "Condition": ("type=1! status=2! observedGeneration=3:i64 lastTransitionTime=4:Time! "
                  "reason=5! message=6!"),
    "Preconditions": "uid=1? resourceVersion=2?",
    "DeleteOptions": ("gracePeriodSeconds=1:i64? preconditions=2:Preconditions orphanDependents=3:b? "
                      "propagationPolicy=4? dryRun=5:s* ignoreStoreReadErrorWithClusterBreakingPotential=6:b?"),
}

CORE = {
    # --- objects
    "Namespace": "metadata=1:meta.ObjectMeta spec=2:NamespaceSpec status=3:NamespaceStatus",
    "NamespaceSpec": "finalizers=1:s*",
    "NamespaceStatus": "phase=1 conditions=2:NamespaceCondition*",
    "NamespaceCondition": "type=1! status=2! lastTransitionTime=4:meta.Time reason=5 message=6",
    "Service": "metadata=1:meta.ObjectMeta spec=2:ServiceSpec status=3:ServiceStatus",
    "ServiceSpec": (
        "ports=1:ServicePort* selector=2:map clusterIP=3 clusterIPs=18:s* type=4 externalIPs=5:s* "
        "sessionAffinity=7 loadBalancerIP=8 loadBalancerSourceRanges=9:s* externalName=10 "
        "externalTrafficPolicy=11 healthCheckNodePort=12:i32 publishNotReadyAddresses=13:b "
        "sessionAffinityConfig=14:SessionAffinityConfig ipFamilies=19:s* ipFamilyPolicy=17? "
        "allocateLoadBalancerNodePorts=20:b? loadBalancerClass=21? internalTrafficPolicy=22? "
        "trafficDistribution=23?"
    ),
    "ServicePort": "name=1 protocol=2 appProtocol=6? port=3:i32! targetPort=4:intstr.IntOrString nodePort=5:i32",
    "SessionAffinityConfig": "clientIP=1:ClientIPConfig",
    "ClientIPConfig": "timeoutSeconds=1:i32?",
    "ServiceStatus": "loadBalancer=1:LoadBalancerStatus conditions=2:meta.Condition*",
    "LoadBalancerStatus": "ingress=1:LoadBalancerIngress*",
    "LoadBalancerIngress": "ip=1 hostname=2 ipMode=3? ports=4:PortStatus*",
    "PortStatus": "port=1:i32! protocol=2! error=3?",
    "Endpoints": "metadata=1:meta.ObjectMeta subsets=2:EndpointSubset*",
    "EndpointSubset": "addresses=1:EndpointAddress* notReadyAddresses=2:EndpointAddress* ports=3:EndpointPort*",
    "EndpointAddress": "ip=1! hostname=3 nodeName=4? targetRef=2:ObjectReference",
    "EndpointPort": "name=1 port=2:i32! protocol=3 appProtocol=4?",
    "ObjectReference": "kind=1 namespace=2 name=3 uid=4 apiVersion=5 resourceVersion=6 fieldPath=7",
    "LocalObjectReference": "name=1",
    "TypedLocalObjectReference": "apiGroup=1? kind=2! name=3!",
    "ConfigMap": "metadata=1:meta.ObjectMeta immutable=4:b? data=2:map binaryData=3:mapy",
    "Secret": "metadata=1:meta.ObjectMeta immutable=5:b? data=2:mapy stringData=4:map type=3",
    "Event": (
        "metadata=1:meta.ObjectMeta involvedObject=2:ObjectReference! reason=3 message=4 "
        "source=5:EventSource firstTimestamp=6:meta.Time lastTimestamp=7:meta.Time count=8:i32 type=9 "
        "eventTime=10:meta.MicroTime series=11:EventSeries action=12 related=13:ObjectReference "
        "reportingComponent=14! reportingInstance=15!"
    ),
    "EventSource": "component=1 host=2",
    "EventSeries": "count=1:i32 lastObservedTime=2:meta.MicroTime",
    "Binding": "metadata=1:meta.ObjectMeta target=2:ObjectReference!",
    "Node": "metadata=1:meta.ObjectMeta spec=2:NodeSpec status=3:NodeStatus",
    "NodeSpec": ("podCIDR=1 podCIDRs=7:s* providerID=3 unschedulable=4:b taints=5:Taint* "
                 "configSource=6:NodeConfigSource externalID=2"),
    "NodeConfigSource": "configMap=2:ConfigMapNodeConfigSource",
    "ConfigMapNodeConfigSource": "namespace=1! name=2! uid=3 resourceVersion=4 kubeletConfigKey=5!",
    "Taint": "key=1! value=2 effect=3! timeAdded=4:meta.Time",
    "NodeStatus": (
        "capacity=1:mapq allocatable=2:mapq phase=3 conditions=4:NodeCondition* addresses=5:NodeAddress* "
        "daemonEndpoints=6:NodeDaemonEndpoints nodeInfo=7:NodeSystemInfo images=8:ContainerImage* "
        "volumesInUse=9:s* volumesAttached=10:AttachedVolume* config=11:NodeConfigStatus "
        "runtimeHandlers=12:NodeRuntimeHandler* features=13:NodeFeatures"
    ),
    "NodeCondition": ("type=1! status=2! lastHeartbeatTime=3:meta.Time lastTransitionTime=4:meta.Time "
                      "reason=5 message=6"),
    "NodeAddress": "type=1! address=2!",
    "NodeDaemonEndpoints": "kubeletEndpoint=1:DaemonEndpoint",
    "DaemonEndpoint": "Port=1:i32!",
    "NodeSystemInfo": ("machineID=1! systemUUID=2! bootID=3! kernelVersion=4! osImage=5! "
                       "containerRuntimeVersion=6! kubeletVersion=7! kubeProxyVersion=8! "
                       "operatingSystem=9! architecture=10! swap=11:NodeSwapStatus"),
    "NodeSwapStatus": "capacity=1:i64?",
    "ContainerImage": "names=1:s* sizeBytes=2:i64",
    "AttachedVolume": "name=1! devicePath=2!",
    "NodeConfigStatus": "assigned=1:NodeConfigSource active=2:NodeConfigSource lastKnownGood=3:NodeConfigSource error=4",
    "NodeRuntimeHandler": "name=1! features=2:NodeRuntimeHandlerFeatures",
    "NodeRuntimeHandlerFeatures": "recursiveReadOnlyMounts=1:b? userNamespaces=2:b?",
    "NodeFeatures": "supplementalGroupsPolicy=1:b?",
    # --- pods
    "Pod": "metadata=1:meta.ObjectMeta spec=2:PodSpec status=3:PodStatus",
    "PodTemplateSpec": "metadata=1:meta.ObjectMeta spec=2:PodSpec",
    "PodSpec": (
        "volumes=1:Volume* initContainers=20:Container* containers=2:Container* "
        "ephemeralContainers=34:EphemeralContainer* restartPolicy=3 terminationGracePeriodSeconds=4:i64? "
        "activeDeadlineSeconds=5:i64? dnsPolicy=6 nodeSelector=7:map serviceAccountName=8 serviceAccount=9 "
        "automountServiceAccountToken=21:b? nodeName=10 hostNetwork=11:b hostPID=12:b hostIPC=13:b "
        "shareProcessNamespace=27:b? securityContext=14:PodSecurityContext imagePullSecrets=15:LocalObjectReference* "
        "hostname=16 subdomain=17 affinity=18:Affinity schedulerName=19 tolerations=22:Toleration* "
        "hostAliases=23:HostAlias* priorityClassName=24 priority=25:i32? dnsConfig=26:PodDNSConfig "
        "readinessGates=28:PodReadinessGate* runtimeClassName=29? enableServiceLinks=30:b? "
        "preemptionPolicy=31? overhead=32:mapq topologySpreadConstraints=33:TopologySpreadConstraint* "
        "setHostnameAsFQDN=35:b? os=36:PodOS hostUsers=37:b? schedulingGates=38:PodSchedulingGate*"
    ),
    "PodOS": "name=1!",
    "PodSchedulingGate": "name=1!",
    "Container": (
        "name=1! image=2 command=3:s* args=4:s* workingDir=5 ports=6:ContainerPort* envFrom=19:EnvFromSource* "
        "env=7:EnvVar* resources=8:ResourceRequirements volumeMounts=9:VolumeMount* "
        "volumeDevices=21:VolumeDevice* livenessProbe=10:Probe readinessProbe=11:Probe startupProbe=22:Probe "
        "lifecycle=12:Lifecycle terminationMessagePath=13 terminationMessagePolicy=20 imagePullPolicy=14 "
        "securityContext=15:SecurityContext stdin=16:b stdinOnce=17:b tty=18:b "
        "resizePolicy=23:ContainerResizePolicy* restartPolicy=24?"
    ),
    "EphemeralContainer": "ephemeralContainerCommon=1:Container^ targetContainerName=2",
    "ContainerResizePolicy": "resourceName=1! restartPolicy=2!",
    "ContainerPort": "name=1 hostPort=2:i32 containerPort=3:i32! protocol=4 hostIP=5",
    "EnvFromSource": "prefix=1 configMapRef=2:ConfigMapEnvSource secretRef=3:SecretEnvSource",
    "ConfigMapEnvSource": "localObjectReference=1:LocalObjectReference^ optional=2:b?",
    "SecretEnvSource": "localObjectReference=1:LocalObjectReference^ optional=2:b?",
    "EnvVar": "name=1! value=2 valueFrom=3:EnvVarSource",
    "EnvVarSource": ("fieldRef=1:ObjectFieldSelector resourceFieldRef=2:ResourceFieldSelector "
                     "configMapKeyRef=3:ConfigMapKeySelector secretKeyRef=4:SecretKeySelector"),
    "ObjectFieldSelector": "apiVersion=1 fieldPath=2!",
    "ResourceFieldSelector": "containerName=1 resource=2! divisor=3:resource.Quantity",
    "ConfigMapKeySelector": "localObjectReference=1:LocalObjectReference^ key=2! optional=3:b?",
    "SecretKeySelector": "localObjectReference=1:LocalObjectReference^ key=2! optional=3:b?",
    "ResourceRequirements": "limits=1:mapq requests=2:mapq claims=3:ResourceClaim*",
    "ResourceClaim": "name=1! request=2",
    "VolumeMount": ("name=1! readOnly=2:b recursiveReadOnly=7? mountPath=3! subPath=4 "
                    "mountPropagation=5? subPathExpr=6"),
    "VolumeDevice": "name=1! devicePath=2!",
    "Probe": ("handler=1:ProbeHandler^ initialDelaySeconds=2:i32 timeoutSeconds=3:i32 periodSeconds=4:i32 "
              "successThreshold=5:i32 failureThreshold=6:i32 terminationGracePeriodSeconds=7:i64?"),
    "ProbeHandler": "exec=1:ExecAction httpGet=2:HTTPGetAction tcpSocket=3:TCPSocketAction grpc=4:GRPCAction",
    "LifecycleHandler": ("exec=1:ExecAction httpGet=2:HTTPGetAction tcpSocket=3:TCPSocketAction "
                         "sleep=4:SleepAction"),
    "Lifecycle": "postStart=1:LifecycleHandler preStop=2:LifecycleHandler stopSignal=3?",
    "ExecAction": "command=1:s*",
    "HTTPGetAction": "path=1 port=2:intstr.IntOrString! host=3 scheme=4 httpHeaders=5:HTTPHeader*",
    "HTTPHeader": "name=1! value=2!",
    "TCPSocketAction": "port=1:intstr.IntOrString! host=2",
    "GRPCAction": "port=1:i32! service=2?",
    "SleepAction": "seconds=1:i64!",
    "SecurityContext": (
        "capabilities=1:Capabilities privileged=2:b? seLinuxOptions=3:SELinuxOptions "
        "windowsOptions=10:WindowsSecurityContextOptions runAsUser=4:i64? runAsGroup=8:i64? "
        "runAsNonRoot=5:b? readOnlyRootFilesystem=6:b? allowPrivilegeEscalation=7:b? procMount=9? "
        "seccompProfile=11:SeccompProfile appArmorProfile=12:AppArmorProfile"
    ),
    "PodSecurityContext": (
        "seLinuxOptions=1:SELinuxOptions windowsOptions=8:WindowsSecurityContextOptions runAsUser=2:i64? "
        "runAsGroup=6:i64? runAsNonRoot=3:b? supplementalGroups=4:i64* fsGroup=5:i64? sysctls=7:Sysctl* "
        "fsGroupChangePolicy=9? seccompProfile=10:SeccompProfile appArmorProfile=11:AppArmorProfile "
        "supplementalGroupsPolicy=12? seLinuxChangePolicy=13?"
    ),
    "Capabilities": "add=1:s* drop=2:s*",
    "SELinuxOptions": "user=1 role=2 type=3 level=4",
    "WindowsSecurityContextOptions": "gmsaCredentialSpecName=1? gmsaCredentialSpec=2? runAsUserName=3? hostProcess=4:b?",
    "SeccompProfile": "type=1! localhostProfile=2?",
    "AppArmorProfile": "type=1! localhostProfile=2?",
    "Sysctl": "name=1! value=2!",
    "Toleration": "key=1 operator=2 value=3 effect=4 tolerationSeconds=5:i64?",
    "HostAlias": "ip=1! hostnames=2:s*",
    "PodDNSConfig": "nameservers=1:s* searches=2:s* options=3:PodDNSConfigOption*",
    "PodDNSConfigOption": "name=1 value=2?",
    "PodReadinessGate": "conditionType=1!",
    "TopologySpreadConstraint": ("maxSkew=1:i32! topologyKey=2! whenUnsatisfiable=3! "
                                 "labelSelector=4:meta.LabelSelector minDomains=5:i32? "
                                 "nodeAffinityPolicy=6? nodeTaintsPolicy=7? matchLabelKeys=8:s*"),
    "Affinity": "nodeAffinity=1:NodeAffinity podAffinity=2:PodAffinity podAntiAffinity=3:PodAntiAffinity",
    "NodeAffinity": ("requiredDuringSchedulingIgnoredDuringExecution=1:NodeSelector "
                     "preferredDuringSchedulingIgnoredDuringExecution=2:PreferredSchedulingTerm*"),
    "NodeSelector": "nodeSelectorTerms=1:NodeSelectorTerm*",
    "NodeSelectorTerm": "matchExpressions=1:NodeSelectorRequirement* matchFields=2:NodeSelectorRequirement*",
    "NodeSelectorRequirement": "key=1! operator=2! values=3:s*",
    "PreferredSchedulingTerm": "weight=1:i32! preference=2:NodeSelectorTerm!",
    "PodAffinity": ("requiredDuringSchedulingIgnoredDuringExecution=1:PodAffinityTerm* "
                    "preferredDuringSchedulingIgnoredDuringExecution=2:WeightedPodAffinityTerm*"),
    "PodAntiAffinity": ("requiredDuringSchedulingIgnoredDuringExecution=1:PodAffinityTerm* "
                        "preferredDuringSchedulingIgnoredDuringExecution=2:WeightedPodAffinityTerm*"),
    "PodAffinityTerm": ("labelSelector=1:meta.LabelSelector namespaces=2:s* topologyKey=3! "
                        "namespaceSelector=4:meta.LabelSelector matchLabelKeys=5:s* mismatchLabelKeys=6:s*"),
    "WeightedPodAffinityTerm": "weight=1:i32! podAffinityTerm=2:PodAffinityTerm!",
    "Volume": "name=1! volumeSource=2:VolumeSource^",
    "VolumeSource": (
        "hostPath=1:HostPathVolumeSource emptyDir=2:EmptyDirVolumeSource "
        "gcePersistentDisk=3:GCEPersistentDiskVolumeSource awsElasticBlockStore=4:AWSElasticBlockStoreVolumeSource "
        "gitRepo=5:GitRepoVolumeSource secret=6:SecretVolumeSource nfs=7:NFSVolumeSource iscsi=8:ISCSIVolumeSource "
        "glusterfs=9:GlusterfsVolumeSource persistentVolumeClaim=10:PersistentVolumeClaimVolumeSource "
        "rbd=11:RBDVolumeSource flexVolume=12:FlexVolumeSource cinder=13:CinderVolumeSource "
        "cephfs=14:CephFSVolumeSource flocker=15:FlockerVolumeSource downwardAPI=16:DownwardAPIVolumeSource "
        "fc=17:FCVolumeSource azureFile=18:AzureFileVolumeSource configMap=19:ConfigMapVolumeSource "
        "vsphereVolume=20:VsphereVirtualDiskVolumeSource quobyte=21:QuobyteVolumeSource "
        "azureDisk=22:AzureDiskVolumeSource photonPersistentDisk=23:PhotonPersistentDiskVolumeSource "
        "portworxVolume=24:PortworxVolumeSource scaleIO=25:ScaleIOVolumeSource projected=26:ProjectedVolumeSource "
        "storageos=27:StorageOSVolumeSource csi=28:CSIVolumeSource ephemeral=29:EphemeralVolumeSource "
        "image=30:ImageVolumeSource"
    ),
    "GCEPersistentDiskVolumeSource": "pdName=1! fsType=2 partition=3:i32 readOnly=4:b",
    "AWSElasticBlockStoreVolumeSource": "volumeID=1! fsType=2 partition=3:i32 readOnly=4:b",
    "GitRepoVolumeSource": "repository=1! revision=2 directory=3",
    "ISCSIVolumeSource": ("targetPortal=1! iqn=2! lun=3:i32! iscsiInterface=4 fsType=5 readOnly=6:b portals=7:s* "
                          "chapAuthDiscovery=8:b chapAuthSession=11:b secretRef=10:LocalObjectReference "
                          "initiatorName=12?"),
    "GlusterfsVolumeSource": "endpoints=1! path=2! readOnly=3:b",
    "RBDVolumeSource": ("monitors=1:s* image=2! fsType=3 pool=4 user=5 keyring=6 secretRef=7:LocalObjectReference "
                        "readOnly=8:b"),
    "FlexVolumeSource": "driver=1! fsType=2 secretRef=3:LocalObjectReference readOnly=4:b options=5:map",
    "CinderVolumeSource": "volumeID=1! fsType=2 readOnly=3:b secretRef=4:LocalObjectReference",
    "CephFSVolumeSource": "monitors=1:s* path=2 user=3 secretFile=4 secretRef=5:LocalObjectReference readOnly=6:b",
    "FlockerVolumeSource": "datasetName=1 datasetUUID=2",
    "FCVolumeSource": "targetWWNs=1:s* lun=2:i32? fsType=3 readOnly=4:b wwids=5:s*",
    "AzureFileVolumeSource": "secretName=1! shareName=2! readOnly=3:b",
    "VsphereVirtualDiskVolumeSource": "volumePath=1! fsType=2 storagePolicyName=3 storagePolicyID=4",
    "QuobyteVolumeSource": "registry=1! volume=2! readOnly=3:b user=4 group=5 tenant=6",
    "AzureDiskVolumeSource": "diskName=1! diskURI=2! cachingMode=3? fsType=4? readOnly=5:b? kind=6?",
    "PhotonPersistentDiskVolumeSource": "pdID=1! fsType=2",
    "PortworxVolumeSource": "volumeID=1! fsType=2 readOnly=3:b",
    "ScaleIOVolumeSource": ("gateway=1! system=2! secretRef=3:LocalObjectReference sslEnabled=4:b "
                            "protectionDomain=5 storagePool=6 storageMode=7 volumeName=8 fsType=9 readOnly=10:b"),
    "StorageOSVolumeSource": "volumeName=1 volumeNamespace=2 fsType=3 readOnly=4:b secretRef=5:LocalObjectReference",
    "EphemeralVolumeSource": "volumeClaimTemplate=1:PersistentVolumeClaimTemplate",
    "PersistentVolumeClaimTemplate": "metadata=1:meta.ObjectMeta spec=2:PersistentVolumeClaimSpec!",
    "PersistentVolumeClaimSpec": (
        "accessModes=1:s* selector=4:meta.LabelSelector resources=2:VolumeResourceRequirements volumeName=3 "
        "storageClassName=5? volumeMode=6? dataSource=7:TypedLocalObjectReference "
        "dataSourceRef=8:TypedObjectReference volumeAttributesClassName=9?"
    ),
    "VolumeResourceRequirements": "limits=1:mapq requests=2:mapq",
    "TypedObjectReference": "apiGroup=1? kind=2! name=3! namespace=4?",
    "HostPathVolumeSource": "path=1! type=2?",
    "EmptyDirVolumeSource": "medium=1 sizeLimit=2:resource.Quantity",
    "SecretVolumeSource": "secretName=1 items=2:KeyToPath* defaultMode=3:i32? optional=4:b?",
    "ConfigMapVolumeSource": ("localObjectReference=1:LocalObjectReference^ items=2:KeyToPath* "
                              "defaultMode=3:i32? optional=4:b?"),
    "KeyToPath": "key=1! path=2! mode=3:i32?",
    "NFSVolumeSource": "server=1! path=2! readOnly=3:b",
    "PersistentVolumeClaimVolumeSource": "claimName=1! readOnly=2:b",
    "DownwardAPIVolumeSource": "items=1:DownwardAPIVolumeFile* defaultMode=2:i32?",
    "DownwardAPIVolumeFile": ("path=1! fieldRef=2:ObjectFieldSelector resourceFieldRef=3:ResourceFieldSelector "
                              "mode=4:i32?"),
    "ProjectedVolumeSource": "sources=1:VolumeProjection* defaultMode=2:i32?",
    "VolumeProjection": ("secret=1:SecretProjection downwardAPI=2:DownwardAPIProjection "
                         "configMap=3:ConfigMapProjection serviceAccountToken=4:ServiceAccountTokenProjection"),
    "SecretProjection": "localObjectReference=1:LocalObjectReference^ items=2:KeyToPath* optional=4:b?",
    "ConfigMapProjection": "localObjectReference=1:LocalObjectReference^ items=2:KeyToPath* optional=4:b?",
    "DownwardAPIProjection": "items=1:DownwardAPIVolumeFile*",
    "ServiceAccountTokenProjection": "audience=1 expirationSeconds=2:i64? path=3!",
    "CSIVolumeSource": "driver=1! readOnly=2:b? fsType=3? volumeAttributes=4:map nodePublishSecretRef=5:LocalObjectReference",
    "ImageVolumeSource": "reference=1 pullPolicy=2",
    "PodStatus": (
        "phase=1 conditions=2:PodCondition* message=3 reason=4 nominatedNodeName=11 hostIP=5 hostIPs=16:HostIP* "
        "podIP=6 podIPs=12:PodIP* startTime=7:meta.Time initContainerStatuses=10:ContainerStatus* "
        "containerStatuses=8:ContainerStatus* qosClass=9 ephemeralContainerStatuses=13:ContainerStatus* "
        "resize=14 observedGeneration=17:i64"
    ),
    "PodCondition": ("type=1! observedGeneration=7:i64 status=2! lastProbeTime=3:meta.Time "
                     "lastTransitionTime=4:meta.Time reason=5 message=6"),
    "PodIP": "ip=1!",
    "HostIP": "ip=1!",
    "ContainerStatus": (
        "name=1! state=2:ContainerState lastState=3:ContainerState ready=4:b! restartCount=5:i32! image=6! "
        "imageID=7! containerID=8 started=9:b? allocatedResources=10:mapq resources=11:ResourceRequirements "
        "volumeMounts=12:VolumeMountStatus* stopSignal=15?"
    ),
    "VolumeMountStatus": "name=1! mountPath=2! readOnly=3:b recursiveReadOnly=4?",
    "ContainerState": ("waiting=1:ContainerStateWaiting running=2:ContainerStateRunning "
                       "terminated=3:ContainerStateTerminated"),
    "ContainerStateWaiting": "reason=1 message=2",
    "ContainerStateRunning": "startedAt=1:meta.Time",
    "ContainerStateTerminated": ("exitCode=1:i32! signal=2:i32 reason=3 message=4 startedAt=5:meta.Time "
                                 "finishedAt=6:meta.Time containerID=7"),
}

APPS = {
    "Deployment": "metadata=1:meta.ObjectMeta spec=2:DeploymentSpec status=3:DeploymentStatus",
    "DeploymentSpec": (
        "replicas=1:i32? selector=2:meta.LabelSelector! template=3:core.PodTemplateSpec! "
        "strategy=4:DeploymentStrategy minReadySeconds=5:i32 revisionHistoryLimit=6:i32? paused=7:b "
        "progressDeadlineSeconds=9:i32?"
    ),
    "DeploymentStrategy": "type=1 rollingUpdate=2:RollingUpdateDeployment",
    "RollingUpdateDeployment": "maxUnavailable=1:intstr.IntOrString maxSurge=2:intstr.IntOrString",
    "DeploymentStatus": (
        "observedGeneration=1:i64 replicas=2:i32 updatedReplicas=3:i32 readyReplicas=7:i32 "
        "availableReplicas=4:i32 unavailableReplicas=5:i32 terminatingReplicas=9:i32? "
        "conditions=6:DeploymentCondition* collisionCount=8:i32?"
    ),
    "DeploymentCondition": ("type=1! status=2! lastUpdateTime=6:meta.Time lastTransitionTime=7:meta.Time "
                            "reason=4 message=5"),
    "ReplicaSet": "metadata=1:meta.ObjectMeta spec=2:ReplicaSetSpec status=3:ReplicaSetStatus",
    "ReplicaSetSpec": ("replicas=1:i32? minReadySeconds=4:i32 selector=2:meta.LabelSelector! "
                       "template=3:core.PodTemplateSpec"),
    "ReplicaSetStatus": ("replicas=1:i32! fullyLabeledReplicas=2:i32 readyReplicas=4:i32 availableReplicas=5:i32 "
                         "terminatingReplicas=7:i32? observedGeneration=3:i64 conditions=6:ReplicaSetCondition*"),
    "ReplicaSetCondition": "type=1! status=2! lastTransitionTime=3:meta.Time reason=4 message=5",
}

DISCOVERY = {
    "EndpointSlice": "metadata=1:meta.ObjectMeta addressType=4! endpoints=2:Endpoint* ports=3:EndpointPort*",
    "Endpoint": (
        "addresses=1:s* conditions=2:EndpointConditions hostname=3? targetRef=4:core.ObjectReference "
        "deprecatedTopology=5:map nodeName=6? zone=7? hints=8:EndpointHints"
    ),
    "EndpointConditions": "ready=1:b? serving=2:b? terminating=3:b?",
    "EndpointHints": "forZones=1:ForZone* forNodes=2:ForNode*",
    "ForZone": "name=1!",
    "ForNode": "name=1!",
    "EndpointPort": "name=1? protocol=2? port=3:i32? appProtocol=4?",
}

COORDINATION = {
    "Lease": "metadata=1:meta.ObjectMeta spec=2:LeaseSpec",
    "LeaseSpec": ("holderIdentity=1? leaseDurationSeconds=2:i32? acquireTime=3:meta.MicroTime "
                  "renewTime=4:meta.MicroTime leaseTransitions=5:i32? strategy=6? preferredHolder=7?"),
}

AUTOSCALING = {
    "Scale": "metadata=1:meta.ObjectMeta spec=2:ScaleSpec status=3:ScaleStatus",
    # omitempty in Go, so JSON leaves out a scale to 0; kept here since 0 is the point of such a request
    "ScaleSpec": "replicas=1:i32!",
    "ScaleStatus": "replicas=1:i32! selector=2",
}

MESSAGES: dict[str, dict[str, str]] = {
    "runtime": RUNTIME, "intstr": INTSTR, "resource": RESOURCE, "meta": META, "core": CORE,
    "apps": APPS, "discovery": DISCOVERY, "coordination": COORDINATION, "autoscaling": AUTOSCALING,
}

# (apiVersion, kind) of request bodies -> (package alias, message name)
KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "Namespace"): ("core", "Namespace"),
    ("v1", "Service"): ("core", "Service"),
    ("v1", "Endpoints"): ("core", "Endpoints"),
    ("v1", "Pod"): ("core", "Pod"),
    ("v1", "Node"): ("core", "Node"),
    ("v1", "Event"): ("core", "Event"),
    ("v1", "ConfigMap"): ("core", "ConfigMap"),
    ("v1", "Secret"): ("core", "Secret"),
    ("v1", "Binding"): ("core", "Binding"),
    ("discovery.k8s.io/v1", "EndpointSlice"): ("discovery", "EndpointSlice"),
    ("apps/v1", "Deployment"): ("apps", "Deployment"),
    ("apps/v1", "ReplicaSet"): ("apps", "ReplicaSet"),
    ("coordination.k8s.io/v1", "Lease"): ("coordination", "Lease"),
    ("autoscaling/v1", "Scale"): ("autoscaling", "Scale"),
    # client-go encodes DeleteOptions with either group version
    ("v1", "DeleteOptions"): ("meta", "DeleteOptions"),
    ("meta.k8s.io/v1", "DeleteOptions"): ("meta", "DeleteOptions"),
    ("apps/v1", "DeleteOptions"): ("meta", "DeleteOptions"),
    ("discovery.k8s.io/v1", "DeleteOptions"): ("meta", "DeleteOptions"),
    ("coordination.k8s.io/v1", "DeleteOptions"): ("meta", "DeleteOptions"),
}
