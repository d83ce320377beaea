"""A small HTTP endpoint that answers like AWX's REST API (/api/v2/) for the
calls the awx.awx modules of extras/awx/configure.yml make: list with filters
(``name``, ``or__id``/``or__name``, any field), create, read, update,
associate/disassociate on related lists, the survey spec and the approval
node of a workflow.  No AWX can be installed here; this keeps every object a
module posted, so a test can read exactly what AWX would have stored."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/api/v2/"
# The lists that also answer as unified_job_templates, with the type AWX gives them.
UNIFIED = {"job_templates": "job_template", "workflow_job_templates": "workflow_job_template",
           "projects": "project", "workflow_approval_templates": "workflow_approval_template"}
RELATED = {
    "job_templates": ["credentials", "labels", "instance_groups", "notification_templates_started",
                      "notification_templates_success", "notification_templates_error", "survey_spec"],
    "workflow_job_templates": ["labels", "notification_templates_started", "notification_templates_success",
                               "notification_templates_error", "notification_templates_approvals", "workflow_nodes",
                               "survey_spec"],
    "workflow_job_template_nodes": ["success_nodes", "failure_nodes", "always_nodes", "credentials", "labels",
                                    "instance_groups", "create_approval_template"],
    "projects": ["notification_templates_started", "notification_templates_success", "notification_templates_error",
                 "update"],
    "organizations": ["notification_templates_started", "notification_templates_success", "notification_templates_error",
                      "notification_templates_approvals", "instance_groups", "galaxy_credentials"],
    "schedules": ["credentials", "labels", "instance_groups"],
}


class FakeAWX(object):
    def __init__(self, seed=None):
        self.objects = {}        # kind -> {id: obj}
        self.links = {}          # (kind, id, sub) -> [ids]
        self.surveys = {}        # (kind, id) -> spec
        self.requests = []       # (method, path, body)
        self.next_id = 1
        self.lock = threading.Lock()
        for kind, objs in (seed or {}).items():
            for obj in objs:
                self.create(kind, dict(obj))

    def create(self, kind, data):
        oid = self.next_id
        self.next_id += 1
        url = "%s%s/%d/" % (API, kind, oid)
        obj = dict(data, id=oid, url=url, type=UNIFIED.get(kind, kind.rstrip("s")),
                   related=dict((sub, url + sub + "/") for sub in RELATED.get(kind, [])), summary_fields={})
        if kind == "projects":
            obj.setdefault("scm_revision", "")
        self.objects.setdefault(kind, {})[oid] = obj
        return obj

    def find(self, kind, query):
        if kind == "unified_job_templates":
            items = [o for k in UNIFIED for o in self.objects.get(k, {}).values()]
        else:
            items = list(self.objects.get(kind, {}).values())
        ors = dict((k[4:], v) for k, v in query.items() if k.startswith("or__"))
        ands = dict((k, v) for k, v in query.items() if not k.startswith("or__") and k not in ("page_size", "page"))

        def match(o, k, v):
            return str(o.get(k)) == v or (isinstance(o.get(k), bool) and str(o.get(k)).lower() == v.lower())
        out = [o for o in items if all(match(o, k, v) for k, v in ands.items())
               and (not ors or any(match(o, k, v) for k, v in ors.items()))]
        return out

    def handle(self, method, path, query, body):
        self.requests.append((method, path, body))
        if not path.startswith(API):
            return 404, {"detail": "Not found."}
        parts = [p for p in path[len(API):].split("/") if p]
        if method == "GET" and not parts:
            return 200, {"ping": API + "ping/"}
        kind = parts[0]
        if len(parts) == 1:
            if method == "GET":
                found = self.find(kind, query)
                return 200, {"count": len(found), "next": None, "previous": None, "results": found}
            if method == "POST":
                return 201, self.create(kind, body or {})
        oid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        obj = self.objects.get(kind, {}).get(oid) if oid is not None else None
        if obj is None:
            return 404, {"detail": "Not found."}
        if len(parts) == 2:
            if method == "GET":
                return 200, obj
            if method in ("PATCH", "PUT"):
                obj.update(body or {})
                return 200, obj
            if method == "DELETE":
                del self.objects[kind][oid]
                return 204, None
        sub = parts[2]
        if sub == "survey_spec":
            if method == "POST":
                self.surveys[(kind, oid)] = body
                return 200, {}
            return 200, self.surveys.get((kind, oid), {})
        if sub == "create_approval_template" and method == "POST":
            approval = self.create("workflow_approval_templates", body or {})
            obj["unified_job_template"] = approval["id"]
            obj["related"]["unified_job_template"] = approval["url"]
            return 201, approval
        if sub == "workflow_nodes" and method == "GET":
            found = [o for o in self.objects.get("workflow_job_template_nodes", {}).values()
                     if o.get("workflow_job_template") == oid]
            return 200, {"count": len(found), "next": None, "previous": None, "results": found}
        key = (kind, oid, sub)
        if method == "GET":
            ids = self.links.get(key, [])
            related_kind = {"success_nodes": "workflow_job_template_nodes", "failure_nodes": "workflow_job_template_nodes",
                            "always_nodes": "workflow_job_template_nodes"}.get(
                sub, "notification_templates" if sub.startswith("notification_templates") else sub)
            found = [self.objects.get(related_kind, {}).get(i, {"id": i}) for i in ids]
            return 200, {"count": len(found), "next": None, "previous": None, "results": found}
        if method == "POST":
            ids = self.links.setdefault(key, [])
            if (body or {}).get("disassociate"):
                if body["id"] in ids:
                    ids.remove(body["id"])
            elif body["id"] not in ids:
                ids.append(body["id"])
            return 204, None
        return 405, {"detail": "Method not allowed."}


def serve(fake):
    """Start FAKE on 127.0.0.1 (a free port); returns (server, base url)."""

    class Handler(BaseHTTPRequestHandler):
        def _do(self):
            u = urlparse(self.path)
            query = dict((k, v[-1]) for k, v in parse_qs(u.query).items())
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            if self.headers.get("Authorization") != "Bearer fake-token":
                code, out = 401, {"detail": "Authentication credentials were not provided."}
            else:
                with fake.lock:
                    code, out = fake.handle(self.command, u.path, query, body)
            data = b"" if out is None else json.dumps(out).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-API-Product-Name", "AWX")
            self.send_header("X-API-Product-Version", "24.6.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _do

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1]
