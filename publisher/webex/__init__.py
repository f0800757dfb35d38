"""Everything about the Webex CDR API: the record, the windows, the rate limits, the client."""
