"""The typed ``cdr`` of an event: every known Webex CDR field. GENERATED: do not edit.

Written by ``python -m publisher.consumer.codegen`` (``make schema``) from the field table in
publisher/webex/fields.py, which the event schema is generated from too. Fields a newer schema
version adds are kept as extra attributes (``model_extra``), so an older consumer loses nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class CdrFields(BaseModel):
    """One CDR: each field under its wxc_sdk name, None when Webex sent it empty."""

    model_config = ConfigDict(extra="allow", frozen=True)

    answer_indicator: str | None = None
    """Webex key 'Answer indicator'."""
    answer_time: datetime | None = None
    """Webex key 'Answer time'."""
    answered: bool | None = None
    """Webex key 'Answered'."""
    authorization_code: str | None = None
    """Webex key 'Authorization code'."""
    call_id: str | None = None
    """Webex key 'Call ID'."""
    caller_id_number: str | None = None
    """Webex key 'Caller ID number'."""
    call_outcome: str | None = None
    """Webex key 'Call outcome'."""
    call_outcome_reason: str | None = None
    """Webex key 'Call outcome reason'."""
    call_recording_platform_name: str | None = None
    """Webex key 'Call Recording Platform Name'."""
    call_recording_result: str | None = None
    """Webex key 'Call Recording Result'."""
    call_recording_trigger: str | None = None
    """Webex key 'Call Recording Trigger'."""
    call_transfer_time: datetime | None = None
    """Webex key 'Call transfer Time'."""
    call_type: str | None = None
    """Webex key 'Call type'."""
    called_line_id: str | None = None
    """Webex key 'Called line ID'."""
    called_number: str | None = None
    """Webex key 'Called number'."""
    calling_line_id: str | None = None
    """Webex key 'Calling line ID'."""
    calling_number: str | None = None
    """Webex key 'Calling number'."""
    client_type: str | None = None
    """Webex key 'Client type'."""
    client_version: str | None = None
    """Webex key 'Client version'."""
    correlation_id: str | None = None
    """Webex key 'Correlation ID'."""
    department_id: str | None = None
    """Webex key 'Department ID'."""
    device_mac: str | None = None
    """Webex key 'Device MAC'."""
    device_owner_uuid: str | None = None
    """Webex key 'Device owner UUID'."""
    dialed_digits: str | None = None
    """Webex key 'Dialed digits'."""
    direction: str | None = None
    """Webex key 'Direction'."""
    duration: int | None = None
    """Webex key 'Duration'."""
    external_caller_id_number: str | None = None
    """Webex key 'External caller ID number'."""
    final_local_session_id: str | None = None
    """Webex key 'Final local SessionID'."""
    final_remote_session_id: str | None = None
    """Webex key 'Final remote SessionID'."""
    inbound_trunk: str | None = None
    """Webex key 'Inbound trunk'."""
    international_country: str | None = None
    """Webex key 'International country'."""
    local_call_id: str | None = None
    """Webex key 'Local call ID'."""
    local_session_id: str | None = None
    """Webex key 'Local SessionID'."""
    location: str | None = None
    """Webex key 'Location'."""
    model: str | None = None
    """Webex key 'Model'."""
    network_call_id: str | None = None
    """Webex key 'Network call ID'."""
    org_uuid: str | None = None
    """Webex key 'Org UUID'."""
    original_reason: str | None = None
    """Webex key 'Original reason'."""
    os_type: str | None = None
    """Webex key 'OS type'."""
    outbound_trunk: str | None = None
    """Webex key 'Outbound trunk'."""
    public_called_ip_address: str | None = None
    """Webex key 'Public Called IP Address'."""
    public_calling_ip_address: str | None = None
    """Webex key 'Public Calling IP Address'."""
    release_time: datetime | None = None
    """Webex key 'Release time'."""
    ring_duration: int | None = None
    """Webex key 'Ring duration'."""
    redirecting_party_uuid: str | None = None
    """Webex key 'Redirecting party UUID'."""
    redirect_reason: str | None = None
    """Webex key 'Redirect reason'."""
    redirecting_number: str | None = None
    """Webex key 'Redirecting number'."""
    related_call_id: str | None = None
    """Webex key 'Related call ID'."""
    related_reason: str | None = None
    """Webex key 'Related reason'."""
    releasing_party: str | None = None
    """Webex key 'Releasing party'."""
    remote_call_id: str | None = None
    """Webex key 'Remote call ID'."""
    remote_session_id: str | None = None
    """Webex key 'Remote SessionID'."""
    report_id: str | None = None
    """Webex key 'Report ID'."""
    report_time: datetime | None = None
    """Webex key 'Report time'."""
    route_group: str | None = None
    """Webex key 'Route group'."""
    route_list_calls_overage: str | None = None
    """Webex key 'Route list calls overage'."""
    site_main_number: str | None = None
    """Webex key 'Site main number'."""
    site_timezone: str | None = None
    """Webex key 'Site timezone'."""
    site_uuid: str | None = None
    """Webex key 'Site UUID'."""
    start_time: datetime | None = None
    """Webex key 'Start time'."""
    sub_client_type: str | None = None
    """Webex key 'Sub client type'."""
    transfer_related_call_id: str | None = None
    """Webex key 'Transfer related call ID'."""
    user: str | None = None
    """Webex key 'User'."""
    user_number: str | None = None
    """Webex key 'User number'."""
    user_type: str | None = None
    """Webex key 'User type'."""
    user_uuid: str | None = None
    """Webex key 'User UUID'."""
    pstn_vendor_name: str | None = None
    """Webex key 'PSTN Vendor Name'."""
    pstn_legal_entity: str | None = None
    """Webex key 'PSTN Legal Entity'."""
    pstn_vendor_org_id: str | None = None
    """Webex key 'PSTN Vendor Org ID'."""
    pstn_provider_id: str | None = None
    """Webex key 'PSTN Provider ID'."""
    original_called_party_uuid: str | None = None
    """Webex key 'Original Called Party UUID'."""
    recall_type: str | None = None
    """Webex key 'Recall Type'."""
    hold_duration: int | None = None
    """Webex key 'Hold Duration'."""
    auto_attendant_key_pressed: str | None = None
    """Webex key 'Auto Attendant Key Pressed'."""
    queue_type: str | None = None
    """Webex key 'Queue Type'."""
    answered_elsewhere: str | None = None
    """Webex key 'Answered Elsewhere'."""
    caller_reputation_score: str | None = None
    """Webex key 'Caller Reputation Score'."""
    caller_reputation_service_result: str | None = None
    """Webex key 'Caller Reputation Service Result'."""
    caller_reputation_score_reason: str | None = None
    """Webex key 'Caller Reputation Score Reason'."""
    interaction_id: str | None = None
    """Webex key 'Interaction ID'."""
    wxcc_consult_merge_status: str | None = None
    """Webex key 'WxCC consult merge status'."""
    elin: str | None = None
    """Webex key 'ELIN'."""
    emergency_number_source: str | None = None
    """Webex key 'Emergency number source'."""
    transfer_type: str | None = None
    """Webex key 'Transfer type'."""
    transfer_type_context: str | None = None
    """Webex key 'Transfer type context'."""
    external_customer_id: str | None = None
    """Webex key 'External customer ID'."""
    answer_reason: str | None = None
    """Webex key 'Answer reason'."""
