"""The 87 known Webex CDR keys, the field names downstream sees, and their value kinds.

Pure data. Raw keys are matched by :func:`normalise_key` (case and runs of white space ignored),
so the documented ``Call transfer Time`` and the real ``Call transfer time`` are one field. The
``field_name`` values are the wxc_sdk attribute names users of the seed package already know.
The table mirrors ``tests/data/cdr-fields.csv``; a unit test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    STRING = "string"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    OPEN_ENUM = "open-enum"


@dataclass(frozen=True, slots=True)
class Field:
    raw_key: str
    """The spelling in the Webex documentation."""
    name: str
    """The field name in events (the wxc_sdk attribute name)."""
    kind: Kind
    spellings: tuple[str, ...] = ()
    """Other spellings seen in real payloads (they normalise to the same key)."""


FIELDS: tuple[Field, ...] = (
    Field("Answer indicator", "answer_indicator", Kind.STRING),
    Field("Answer time", "answer_time", Kind.TIMESTAMP),
    Field("Answered", "answered", Kind.BOOLEAN),
    Field("Authorization code", "authorization_code", Kind.STRING),
    Field("Call ID", "call_id", Kind.STRING),
    Field("Caller ID number", "caller_id_number", Kind.STRING),
    Field("Call outcome", "call_outcome", Kind.STRING),
    Field("Call outcome reason", "call_outcome_reason", Kind.STRING),
    Field("Call Recording Platform Name", "call_recording_platform_name", Kind.STRING),
    Field("Call Recording Result", "call_recording_result", Kind.STRING),
    Field("Call Recording Trigger", "call_recording_trigger", Kind.STRING),
    Field(
        "Call transfer Time",
        "call_transfer_time",
        Kind.TIMESTAMP,
        spellings=("Call transfer time",),
    ),
    Field("Call type", "call_type", Kind.OPEN_ENUM),
    Field("Called line ID", "called_line_id", Kind.STRING),
    Field("Called number", "called_number", Kind.STRING),
    Field("Calling line ID", "calling_line_id", Kind.STRING),
    Field("Calling number", "calling_number", Kind.STRING),
    Field("Client type", "client_type", Kind.OPEN_ENUM),
    Field("Client version", "client_version", Kind.STRING),
    Field("Correlation ID", "correlation_id", Kind.STRING),
    Field("Department ID", "department_id", Kind.STRING),
    Field("Device MAC", "device_mac", Kind.STRING, spellings=("Device Mac",)),
    Field("Device owner UUID", "device_owner_uuid", Kind.STRING),
    Field("Dialed digits", "dialed_digits", Kind.STRING),
    Field("Direction", "direction", Kind.OPEN_ENUM),
    Field("Duration", "duration", Kind.INTEGER),
    Field("External caller ID number", "external_caller_id_number", Kind.STRING),
    Field("Final local SessionID", "final_local_session_id", Kind.STRING),
    Field("Final remote SessionID", "final_remote_session_id", Kind.STRING),
    Field("Inbound trunk", "inbound_trunk", Kind.STRING),
    Field("International country", "international_country", Kind.STRING),
    Field("Local call ID", "local_call_id", Kind.STRING),
    Field("Local SessionID", "local_session_id", Kind.STRING),
    Field("Location", "location", Kind.STRING),
    Field("Model", "model", Kind.STRING),
    Field("Network call ID", "network_call_id", Kind.STRING),
    Field("Org UUID", "org_uuid", Kind.STRING),
    Field("Original reason", "original_reason", Kind.OPEN_ENUM),
    Field("OS type", "os_type", Kind.STRING),
    Field("Outbound trunk", "outbound_trunk", Kind.STRING),
    Field("Public Called IP Address", "public_called_ip_address", Kind.STRING),
    Field("Public Calling IP Address", "public_calling_ip_address", Kind.STRING),
    Field("Release time", "release_time", Kind.TIMESTAMP),
    Field("Ring duration", "ring_duration", Kind.INTEGER),
    Field("Redirecting party UUID", "redirecting_party_uuid", Kind.STRING),
    Field("Redirect reason", "redirect_reason", Kind.OPEN_ENUM),
    Field("Redirecting number", "redirecting_number", Kind.STRING),
    Field("Related call ID", "related_call_id", Kind.STRING),
    Field("Related reason", "related_reason", Kind.OPEN_ENUM),
    Field("Releasing party", "releasing_party", Kind.STRING),
    Field("Remote call ID", "remote_call_id", Kind.STRING),
    Field("Remote SessionID", "remote_session_id", Kind.STRING),
    Field("Report ID", "report_id", Kind.STRING),
    Field("Report time", "report_time", Kind.TIMESTAMP),
    Field("Route group", "route_group", Kind.STRING),
    Field("Route list calls overage", "route_list_calls_overage", Kind.STRING),
    Field("Site main number", "site_main_number", Kind.STRING),
    Field("Site timezone", "site_timezone", Kind.STRING),
    Field("Site UUID", "site_uuid", Kind.STRING),
    Field("Start time", "start_time", Kind.TIMESTAMP),
    Field("Sub client type", "sub_client_type", Kind.STRING),
    Field("Transfer related call ID", "transfer_related_call_id", Kind.STRING),
    Field("User", "user", Kind.STRING),
    Field("User number", "user_number", Kind.STRING),
    Field("User type", "user_type", Kind.OPEN_ENUM),
    Field("User UUID", "user_uuid", Kind.STRING),
    Field("PSTN Vendor Name", "pstn_vendor_name", Kind.STRING, spellings=("PSTN vendor name",)),
    Field("PSTN Legal Entity", "pstn_legal_entity", Kind.STRING, spellings=("PSTN legal entity",)),
    Field(
        "PSTN Vendor Org ID", "pstn_vendor_org_id", Kind.STRING, spellings=("PSTN vendor org ID",)
    ),
    Field("PSTN Provider ID", "pstn_provider_id", Kind.STRING, spellings=("PSTN provider ID",)),
    Field(
        "Original Called Party UUID",
        "original_called_party_uuid",
        Kind.STRING,
        spellings=("Original called party UUID",),
    ),
    Field("Recall Type", "recall_type", Kind.STRING, spellings=("Recall type",)),
    Field("Hold Duration", "hold_duration", Kind.INTEGER, spellings=("Hold duration",)),
    Field("Auto Attendant Key Pressed", "auto_attendant_key_pressed", Kind.STRING),
    Field("Queue Type", "queue_type", Kind.STRING, spellings=("Queue type",)),
    Field(
        "Answered Elsewhere", "answered_elsewhere", Kind.STRING, spellings=("Answered elsewhere",)
    ),
    Field("Caller Reputation Score", "caller_reputation_score", Kind.STRING),
    Field("Caller Reputation Service Result", "caller_reputation_service_result", Kind.STRING),
    Field("Caller Reputation Score Reason", "caller_reputation_score_reason", Kind.STRING),
    Field("Interaction ID", "interaction_id", Kind.STRING),
    Field("WxCC consult merge status", "wxcc_consult_merge_status", Kind.STRING),
    Field("ELIN", "elin", Kind.STRING),
    Field("Emergency number source", "emergency_number_source", Kind.STRING),
    Field("Transfer type", "transfer_type", Kind.STRING),
    Field("Transfer type context", "transfer_type_context", Kind.STRING),
    Field("External customer ID", "external_customer_id", Kind.STRING),
    Field("Answer reason", "answer_reason", Kind.STRING),
)

# Values the seed (wxc_sdk) lists today. Webex adds values over time: an unlisted value is kept
# as it came and counted, never refused.
KNOWN_ENUM_VALUES: dict[str, frozenset[str]] = {
    "call_type": frozenset(
        {
            "SIP_MEETING",
            "SIP_INTERNATIONAL",
            "SIP_SHORTCODE",
            "SIP_INBOUND",
            "UNKNOWN",
            "SIP_EMERGENCY",
            "SIP_ENTERPRISE",
            "SIP_TOLLFREE",
            "SIP_NATIONAL",
            "SIP_MOBILE",
        }
    ),
    "client_type": frozenset(
        {"SIP", "WXC_CLIENT", "WXC_THIRD_PARTY", "TEAMS_WXC_CLIENT", "WXC_DEVICE", "WXC_SIP_GW"}
    ),
    "direction": frozenset({"ORIGINATING", "TERMINATING"}),
    "original_reason": frozenset(
        {
            "Unconditional",
            "NoAnswer",
            "CallQueue",
            "HuntGroup",
            "TimeOfDay",
            "UserBusy",
            "FollowMe",
            "Unrecognised",
            "Deflection",
            "Unknown",
        }
    ),
    "redirect_reason": frozenset(
        {
            "Unconditional",
            "NoAnswer",
            "CallQueue",
            "TimeOfDay",
            "UserBusy",
            "FollowMe",
            "HuntGroup",
            "Deflection",
            "Unknown",
        }
    ),
    "related_reason": frozenset(
        {
            "ConsultativeTransfer",
            "CallForwardSelective",
            "CallPark",
            "CallParkRetrieve",
            "CallQueue",
            "Unrecognised",
            "CallPickup",
            "CallForwardAlways",
            "CallForwardBusy",
            "FaxDeposit",
            "HuntGroup",
            "PushNotificationRetrieval",
            "VoiceXMLScriptTermination",
            "CallForwardNoAnswer",
            "AnywhereLocation",
            "CallRetrieve",
            "Deflection",
            "DirectedCallPickup",
            "CallForwardModeBased",
        }
    ),
    "user_type": frozenset(
        {
            "AutomatedAttendantVideo",
            "Anchor",
            "BroadworksAnywhere",
            "VoiceMailRetrieval",
            "LocalGateway",
            "HuntGroup",
            "GroupPaging",
            "User",
            "VoiceMailGroup",
            "CallCenterStandard",
            "VoiceXML",
            "RoutePoint",
            "VirtualLine",
            "Place",
        }
    ),
}

# Fields where "NA" is a real value rather than "absent" (the API documents it so).
NA_IS_A_VALUE: frozenset[str] = frozenset({"wxcc_consult_merge_status"})


def normalise_key(raw_key: str) -> str:
    """The matching form of a raw key: runs of white space folded to one space, case folded."""
    return " ".join(raw_key.split()).casefold()


FIELDS_BY_KEY: dict[str, Field] = {normalise_key(f.raw_key): f for f in FIELDS}
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
REPORT_ID = "report_id"
CORRELATION_ID = "correlation_id"
