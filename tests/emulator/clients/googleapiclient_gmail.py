"""googleapiclient (discovery-driven) reads messages and a batch from the emulator (subprocess).

Arguments: base_url access_token message_id...
"""

import json
import sys

import google_auth_httplib2
import httplib2
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

base_url, token, *mids = sys.argv[1:]
http = google_auth_httplib2.AuthorizedHttp(Credentials(token), http=httplib2.Http())
service = build(
    "gmail", "v1", http=http, static_discovery=True, client_options={"api_endpoint": base_url}
)
listed = service.users().messages().list(userId="me").execute()
got = {}


def callback(request_id, response, exception):
    got[request_id] = (
        {"status": getattr(getattr(exception, "resp", None), "status", None)}
        if exception
        else response
    )


batch = service.new_batch_http_request(callback=callback)
batch._batch_uri = base_url + "/batch/gmail/v1"
for mid in mids:
    batch.add(
        service.users().messages().get(userId="me", id=mid, format="metadata"), request_id=mid
    )
batch.add(service.users().messages().get(userId="me", id="ffffffffffffffff"), request_id="missing")
batch.execute(http=http)
print(json.dumps({"listed": [m["id"] for m in listed["messages"]], "batch": got}))
