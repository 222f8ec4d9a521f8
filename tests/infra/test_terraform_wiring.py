"""The Terraform in infra/ wires lrowatch as the code and the contract expect.

Parses every infra/*.tf with python-hcl2 and checks the wiring that
`terraform validate` cannot: environment variables per function (from
functions/config.py), topics, push subscriptions, identities, invokers, the
Scheduler job, Firestore indexes and TTLs, and the contract's names.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "modules" / "lrowatch"  # the reusable module; infra/ itself is the root example
CONFIG = ROOT / "functions" / "config.py"

FUNCTIONS = ("submit", "submit_pubsub", "poll", "handle")


# --- HCL loading --------------------------------------------------------------
#
# python-hcl2 8.x keeps the quotes of string literals and labels ('"lro"'),
# wraps expressions in ${...} and adds __is_block__/__comments__ markers;
# 4.x-7.x return bare strings. _clean() brings both to one shape: quotes
# stripped, markers dropped, expressions left as "${...}".


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _clean(node):
    if isinstance(node, dict):
        return {
            _unquote(k): _clean(v) for k, v in node.items() if k not in ("__is_block__", "__comments__", "__start_line__", "__end_line__")
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


class Infra:
    def __init__(self, directory: Path):
        self.files = sorted(directory.glob("*.tf"))
        self.text = "\n".join(p.read_text() for p in self.files)
        self.resources: dict[str, dict[str, dict]] = defaultdict(dict)
        self.data: dict[str, dict[str, dict]] = defaultdict(dict)
        self.variables: dict[str, dict] = {}
        self.locals: dict = {}
        self.outputs: dict[str, dict] = {}
        self.terraform: list[dict] = []
        for path in self.files:
            with path.open() as handle:
                doc = _clean(hcl2.load(handle))
            for entry in doc.get("resource", []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        assert name not in self.resources[rtype], f"duplicate {rtype}.{name}"
                        self.resources[rtype][name] = body
            for entry in doc.get("data", []):
                for dtype, named in entry.items():
                    self.data[dtype].update(named)
            for entry in doc.get("variable", []):
                self.variables.update(entry)
            for entry in doc.get("locals", []):
                self.locals.update(entry)
            for entry in doc.get("output", []):
                self.outputs.update(entry)
            self.terraform.extend(doc.get("terraform", []))

    def resource(self, rtype: str, name: str) -> dict:
        assert name in self.resources.get(rtype, {}), f"missing resource {rtype}.{name}"
        return self.resources[rtype][name]

    def default(self, variable: str):
        assert variable in self.variables, f"missing variable {variable}"
        return self.variables[variable].get("default")


def block(body: dict, name: str) -> dict:
    """The single nested block `name` of a body (hcl2 gives blocks as lists)."""
    value = body.get(name)
    assert value, f"missing block {name}"
    if isinstance(value, list):
        assert len(value) == 1, f"expected one {name} block, got {len(value)}"
        value = value[0]
    return value


def refs(expr, kind: str) -> set[str]:
    """Names of `kind.NAME` references in an expression (kind e.g. google_pubsub_topic)."""
    return set(re.findall(rf"\b{re.escape(kind)}\.([A-Za-z0-9_-]+)", str(expr)))


def resolve(expr):
    """The value of a bare `${local.NAME}` reference; anything else unchanged."""
    match = re.fullmatch(r"\$\{local\.([A-Za-z0-9_]+)\}", str(expr))
    return resolve(INFRA_MODEL.locals[match.group(1)]) if match else expr


def local_keys(expr) -> set[str]:
    """Keys of a map expression: a literal map, or the locals it merges."""
    if isinstance(expr, dict):
        return set(expr)
    keys: set[str] = set()
    for name in re.findall(r"\blocal\.([A-Za-z0-9_]+)", str(expr)):
        keys |= local_keys(INFRA_MODEL.locals[name])
    return keys


def _each(path: str, key, value):
    """The value of each.key / each.value / each.value.ATTR for one instance."""
    if path == "key":
        return key
    if path == "value":
        return value
    return value[path.split(".", 1)[1]]


def substitute(node, key, value, iterator: str = "each"):
    """A body with `iterator.key` / `iterator.value[.ATTR]` replaced by one instance's values."""
    if isinstance(node, dict):
        return {k: substitute(v, key, value, iterator) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, key, value, iterator) for v in node]
    if not isinstance(node, str):
        return node
    pattern = rf"\b{re.escape(iterator)}\.(key|value(?:\.[A-Za-z0-9_]+)?)\b"
    whole = re.fullmatch(rf"\$\{{{pattern[2:]}\}}", node)
    if whole:
        return _each(whole.group(1), key, value)

    def literal(match):
        found = _each(match.group(1), key, value)
        return f'"{found}"' if isinstance(found, str) else str(found)

    return re.sub(pattern, literal, node)


def _expand_dynamic(body: dict) -> dict:
    """`dynamic "NAME"` blocks over a literal list turned into plain NAME blocks."""
    body = dict(body)
    for entry in body.pop("dynamic", []):
        for name, spec in entry.items():
            items = spec["for_each"]
            assert isinstance(items, list), f"dynamic {name}: for_each not a literal list"
            content = spec["content"][0] if isinstance(spec["content"], list) else spec["content"]
            body[name] = [substitute(content, i, item, name) for i, item in enumerate(items)]
    return body


def instances(infra: "Infra", rtype: str) -> dict[str, dict]:
    """Every instance of a resource type, by address: a resource without for_each
    (or with one over something other than a literal local map) as NAME, one
    with for_each over a literal local map as NAME[KEY], with each.key and
    each.value substituted and dynamic blocks expanded."""
    found = {}
    for name, body in infra.resources.get(rtype, {}).items():
        over = resolve(body["for_each"]) if "for_each" in body else None
        if isinstance(over, dict):
            for key, value in over.items():
                found[f"{name}[{key}]"] = _expand_dynamic(substitute(body, key, value))
        else:
            found[name] = body
    return found


def targets(expr, kind: str) -> set[str]:
    """Addresses `kind.NAME` or `kind.NAME["KEY"]` referenced in an expression, as NAME or NAME[KEY]."""
    return {
        f"{name}[{key}]" if key else name
        for name, key in re.findall(rf'\b{re.escape(kind)}\.([A-Za-z0-9_-]+)(?:\["([^"]+)"\])?', str(expr))
    }


def keyed(expr, kind: str) -> set[str]:
    """Like targets(), but NAME[KEY] given as KEY alone."""
    return {re.sub(r"^[A-Za-z0-9_-]+\[(.*)\]$", r"\1", t) for t in targets(expr, kind)}


def config_constants() -> dict[str, object]:
    """COMMON_ENV, POLL_ENV and LOCAL_ONLY_ENV from functions/config.py, read without importing it."""
    tree = ast.parse(CONFIG.read_text())
    names: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                names[target] = value.value
            elif isinstance(value, ast.Tuple):
                items = []
                for item in value.elts:
                    if isinstance(item, ast.Constant):
                        items.append(item.value)
                    elif isinstance(item, ast.Name):
                        items.append(names[item.id])
                names[target] = tuple(items)
    return names


INFRA_MODEL = Infra(INFRA)
CONFIG_NAMES = config_constants()


@pytest.fixture(scope="module")
def infra() -> Infra:
    return INFRA_MODEL


def functions(infra: Infra) -> dict[str, dict]:
    """Every function instance, by entry point."""
    found = {}
    for address, body in instances(infra, "google_cloudfunctions2_function").items():
        entry = block(body, "build_config")["entry_point"]
        assert entry not in found, f"two functions with entry point {entry}"
        found[entry] = body
    return found


def function_of(infra: Infra, expr) -> set[str]:
    """Entry points of the functions an expression references."""
    by_address = {a: block(b, "build_config")["entry_point"] for a, b in instances(infra, "google_cloudfunctions2_function").items()}
    return {by_address[t] for t in targets(expr, "google_cloudfunctions2_function")}


def function_env(infra: Infra, name: str) -> set[str]:
    service = block(functions(infra)[name], "service_config")
    expr = service.get("environment_variables", {})
    indexed = re.fullmatch(r'\$\{local\.([A-Za-z0-9_]+)\["([^"]+)"\]\}', str(expr))
    if indexed:
        expr = INFRA_MODEL.locals[indexed.group(1)][indexed.group(2)]
    return local_keys(expr)


# --- Environment --------------------------------------------------------------


def test_config_lists_are_found():
    for name in ("COMMON_ENV", "POLL_ENV", "LOCAL_ONLY_ENV"):
        assert CONFIG_NAMES.get(name), f"{name} not found in functions/config.py"


def test_every_function_gets_exactly_the_common_environment(infra):
    for name in ("submit", "submit_pubsub", "handle"):
        assert function_env(infra, name) == set(CONFIG_NAMES["COMMON_ENV"]), name


def test_poll_gets_the_common_and_the_poll_environment(infra):
    assert function_env(infra, "poll") == set(CONFIG_NAMES["COMMON_ENV"]) | set(CONFIG_NAMES["POLL_ENV"])


def test_local_only_variables_appear_nowhere_in_terraform(infra):
    for name in FUNCTIONS:
        assert not function_env(infra, name) & set(CONFIG_NAMES["LOCAL_ONLY_ENV"]), name
    for variable in CONFIG_NAMES["LOCAL_ONLY_ENV"]:
        assert variable not in infra.text, f"{variable} is local/testing only"


def test_environment_values_come_from_the_matching_inputs(infra):
    common, poll = infra.locals["common_env"], infra.locals["poll_env"]
    assert refs(common["GOOGLE_CLOUD_PROJECT"], "var") == {"project_id"}
    assert refs(common["LRO_COLLECTION"], "var") == {"collection"}
    assert targets(common["LRO_EVENTS_TOPIC"], "google_pubsub_topic") == {"contract[events]"}
    assert targets(common["LRO_COMMANDS_TOPIC"], "google_pubsub_topic") == {"contract[commands]"}
    assert targets(common["LRO_SUBMISSIONS_TOPIC"], "google_pubsub_topic") == {"contract[submissions]"}
    assert refs(common["LRO_NOTIFY_URL_PREFIXES"], "var") == {"notify_url_prefixes"}
    assert "jsonencode" in common["LRO_DEFAULT_POLICY"]
    assert "jsonencode" in poll["LRO_WATCH_SCOPES"]
    assert refs(poll["LRO_POLL_BUDGET_S"], "var") == {"poll_budget_s"}
    assert targets(poll["LRO_POLL_SHARDS_TOPIC"], "google_pubsub_topic") == {"contract[poll_shards]"}


# --- Functions ------------------------------------------------------------------


def test_the_four_entry_points_match_the_contract(infra):
    deployed = functions(infra)
    assert set(deployed) == set(FUNCTIONS)
    assert len(instances(infra, "google_cloudfunctions2_function")) == len(FUNCTIONS)
    for name, body in deployed.items():
        build = block(body, "build_config")
        assert build["entry_point"] == name
        assert resolve(build["runtime"]) == "python311"
        storage = block(block(build, "source"), "storage_source")
        assert refs(storage["object"], "google_storage_bucket_object") == {"source"}


def test_pushed_functions_have_no_event_trigger(infra):
    # Their subscriptions are managed in pubsub.tf (DLQ, ordering, ack deadline).
    for name, body in functions(infra).items():
        assert "event_trigger" not in body, name


def test_every_function_runs_as_its_own_service_account(infra):
    accounts = {}
    for name in FUNCTIONS:
        service = block(functions(infra)[name], "service_config")
        (account,) = targets(service["service_account_email"], "google_service_account")
        accounts[name] = account
    assert len(set(accounts.values())) == len(FUNCTIONS), accounts
    others = {"this[pusher]", "this[scheduler]", "this[build]"}
    assert not set(accounts.values()) & others
    assert set(infra.locals["service_accounts"]) == set(FUNCTIONS) | {"pusher", "scheduler", "build"}


def test_functions_serve_the_latest_revision_and_only_submit_is_reachable_from_outside(infra):
    for name in FUNCTIONS:
        service = block(functions(infra)[name], "service_config")
        assert service["all_traffic_on_latest_revision"] is True, name
        if name == "submit":
            assert refs(service["ingress_settings"], "var") == {"submit_ingress"}
        else:
            assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY", name


def test_source_zip_leaves_out_everything_but_the_runtime(infra):
    excludes = infra.data["archive_file"]["source"]["excludes"]
    for pattern in (".git/**", ".venv/**", ".venv-checkov/**", "tests/**", "infra/**"):
        assert pattern in excludes


def test_poll_timeout_exceeds_the_poll_budget(infra):
    assert infra.default("poll_timeout_s") > infra.default("poll_budget_s")
    assert "var.poll_budget_s <= 600" in infra.variables["poll_budget_s"]["validation"][0]["condition"]
    poll = functions(infra)["poll"]
    assert refs(block(poll, "service_config")["timeout_seconds"], "var") == {"poll_timeout_s"}
    conditions = " ".join(p["condition"] for p in block(poll, "lifecycle")["precondition"])
    assert "var.poll_budget_s" in conditions and "var.poll_timeout_s" in conditions


def test_pushed_handlers_timeout_fits_their_ack_deadline(infra):
    assert infra.default("handler_timeout_s") <= 600
    for name in ("handle", "submit_pubsub"):
        service = block(functions(infra)[name], "service_config")
        assert refs(service["timeout_seconds"], "var") == {"handler_timeout_s"}


# --- Pub/Sub ---------------------------------------------------------------------


def push_subscriptions(infra: Infra) -> dict[str, dict]:
    return {n: b for n, b in instances(infra, "google_pubsub_subscription").items() if "push_config" in b}


def test_contract_topic_names_and_defaults(infra):
    assert infra.default("events_topic") == "lro-events"
    assert infra.default("commands_topic") == "lro-commands"
    assert infra.default("submissions_topic") == "lro-submissions"
    assert infra.default("poll_shards_topic") == "lro-poll-shards"
    assert infra.default("collection") == "lro_operations"
    assert infra.default("name_prefix") == "lro"
    assert infra.default("schedule") == "* * * * *"
    topics = instances(infra, "google_pubsub_topic")
    for topic in ("events", "commands", "submissions", "poll_shards"):
        body = topics[f"contract[{topic}]"]
        assert refs(body["name"], "var") == {f"{topic}_topic"}


def test_every_referenced_resource_exists(infra):
    for kind in (
        "google_pubsub_topic",
        "google_pubsub_subscription",
        "google_service_account",
        "google_cloudfunctions2_function",
        "google_cloud_run_service_iam_member",
        "google_pubsub_topic_iam_member",
        "google_firestore_database",
        "google_firestore_field",
        "google_storage_bucket",
        "google_storage_bucket_object",
        "google_project_iam_member",
    ):
        referenced = refs(infra.text.replace(f'resource "{kind}"', ""), kind)
        missing = referenced - set(infra.resources.get(kind, {}))
        assert not missing, f"{kind} referenced but not declared: {missing}"


def test_push_subscriptions_route_each_topic_to_its_function(infra):
    routes = {}
    for name, body in push_subscriptions(infra).items():
        (topic,) = keyed(body["topic"], "google_pubsub_topic")
        (function,) = function_of(infra, block(body, "push_config")["push_endpoint"])
        routes[topic] = routes.get(topic, set()) | {function}
    assert routes == {"events": {"handle"}, "commands": {"handle"}, "submissions": {"submit_pubsub"},
                      "poll_shards": {"poll"}}


def test_every_push_subscription_has_oidc_retry_and_dead_letters(infra):
    dead_letter_topics = set()
    for name, body in push_subscriptions(infra).items():
        push = block(body, "push_config")
        oidc = block(push, "oidc_token")
        assert targets(oidc["service_account_email"], "google_service_account") == {"this[pusher]"}, name
        assert oidc.get("audience") == push["push_endpoint"], name
        assert "service_config[0].uri" in push["push_endpoint"], f"{name}: push to the run.app URL"
        retry = block(body, "retry_policy")
        assert retry["minimum_backoff"] and retry["maximum_backoff"], name
        dead = block(body, "dead_letter_policy")
        assert refs(dead["dead_letter_topic"], "google_pubsub_topic") == {"dead_letter"}, name
        assert targets(dead["dead_letter_topic"], "google_pubsub_topic") == {f"dead_letter[{name[5:-1]}]"}, name
        assert refs(dead["max_delivery_attempts"], "var") == {"max_delivery_attempts"}, name
        dead_letter_topics.add(dead["dead_letter_topic"])
        # Long enough for the pushed function's work: a shard run of poll takes its whole budget.
        timeout = "poll_timeout_s" if name == "push[poll_shards]" else "handler_timeout_s"
        assert refs(body["ack_deadline_seconds"], "var") == {timeout}, name
        assert block(body, "expiration_policy")["ttl"] == "", f"{name} must never expire"
    assert len(dead_letter_topics) == len(push_subscriptions(infra)), "one dead-letter topic per subscription"
    assert 5 <= infra.default("max_delivery_attempts") <= 100


def test_only_the_events_subscription_is_ordered(infra):
    for name, body in push_subscriptions(infra).items():
        ordered = body.get("enable_message_ordering") is True
        assert ordered == (targets(body["topic"], "google_pubsub_topic") == {"contract[events]"}), name


def test_dead_letters_are_held_in_a_pull_subscription(infra):
    hold = infra.resource("google_pubsub_subscription", "dead_letter_hold")
    assert "push_config" not in hold
    assert refs(hold["topic"], "google_pubsub_topic") == {"dead_letter"}
    assert hold["for_each"] == infra.resource("google_pubsub_topic", "dead_letter")["for_each"]


def test_pubsub_service_agent_can_dead_letter(infra):
    agent = infra.locals["pubsub_service_agent"]
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in agent and agent.startswith("serviceAccount:service-")
    publisher = infra.resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert publisher["role"] == "roles/pubsub.publisher"
    assert refs(publisher["topic"], "google_pubsub_topic") == {"dead_letter"}
    assert publisher["member"] == "${local.pubsub_service_agent}"
    subscriber = infra.resource("google_pubsub_subscription_iam_member", "source_subscriber")
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert subscriber["member"] == "${local.pubsub_service_agent}"
    assert refs(subscriber["subscription"], "google_pubsub_subscription") == {"push"}
    push = infra.resource("google_pubsub_subscription", "push")
    for grant in (publisher, subscriber):
        assert grant["for_each"] == push["for_each"]
    sources = {t for body in instances(infra, "google_pubsub_subscription_iam_member").values() for t in targets(body["subscription"], "google_pubsub_subscription")}
    assert sources == set(push_subscriptions(infra))


# --- IAM ---------------------------------------------------------------------------


def test_no_public_member_anywhere(infra):
    for path in [*infra.files, ROOT / "cloudbuild.yaml"]:
        if path.exists():
            text = path.read_text().lower()
            assert "allusers" not in text and "allauthenticatedusers" not in text, path.name


def test_publishers_are_granted_on_specific_topics_only(infra):
    grants = defaultdict(set)
    for name, body in instances(infra, "google_pubsub_topic_iam_member").items():
        if body["role"] != "roles/pubsub.publisher":
            continue
        for account in keyed(body["member"], "google_service_account"):
            grants[account] |= keyed(body["topic"], "google_pubsub_topic") or {"var.notify_topics"}
    assert grants == {
        "submit": {"commands"},
        "submit_pubsub": {"commands"},
        "poll": {"events", "commands", "poll_shards"},
        "handle": {"events", "var.notify_topics"},
    }
    project_roles = {body["role"] for body in infra.resources["google_project_iam_member"].values()}
    assert not {r for r in project_roles if r.startswith(("roles/pubsub", "roles/run", "roles/cloudfunctions"))}
    assert not {"roles/owner", "roles/editor"} & project_roles


def test_firestore_access_is_for_the_four_functions_only(infra):
    grant = infra.resource("google_project_iam_member", "datastore_user")
    assert grant["role"] == "roles/datastore.user"
    accounts = infra.locals["function_service_accounts"]
    assert set(accounts) == set(FUNCTIONS)
    assert {k for expr in accounts.values() for k in keyed(expr, "google_service_account")} == set(FUNCTIONS)
    assert refs(grant["for_each"], "local") == {"function_service_accounts"}


def test_invokers_are_granted_per_function(infra):
    invokers = defaultdict(set)
    for name, body in instances(infra, "google_cloud_run_service_iam_member").items():
        assert body["role"] == "roles/run.invoker", name
        (function,) = function_of(infra, body["service"])
        assert function_of(infra, body["location"]) == {function}, name
        members = keyed(body["member"], "google_service_account") or {body["member"]}
        invokers[function] |= members
    assert invokers == {
        "submit": {"${each.value}"},
        "handle": {"pusher"},
        "submit_pubsub": {"pusher"},
        "poll": {"scheduler", "pusher"},  # each tick, and the shard runs it requests over Pub/Sub
    }
    submit = infra.resource("google_cloud_run_service_iam_member", "submit_invokers")
    assert refs(submit["for_each"], "var") == {"submit_invokers"}
    assert infra.default("submit_invokers") == []


# --- Scheduler -----------------------------------------------------------------------


def test_scheduler_calls_poll_with_an_oidc_token_and_the_budget(infra):
    job = infra.resource("google_cloud_scheduler_job", "poll")
    target = block(job, "http_target")
    assert target["http_method"] == "POST"
    assert function_of(infra, target["uri"]) == {"poll"}
    oidc = block(target, "oidc_token")
    assert targets(oidc["service_account_email"], "google_service_account") == {"this[scheduler]"}
    assert oidc["audience"] == target["uri"]
    assert "budget_s" in target["body"] and "var.poll_budget_s" in target["body"]
    assert refs(job["attempt_deadline"], "var") == {"poll_timeout_s"}
    assert refs(job["schedule"], "var") == {"schedule"}
    assert "retry_config" in job
    assert infra.default("poll_timeout_s") <= 1800


# --- Firestore -------------------------------------------------------------------------


def test_poller_indexes_exist(infra):
    shapes = set()
    for body in instances(infra, "google_firestore_index").values():
        assert refs(body["collection"], "var") == {"collection"}
        fields = body["fields"]
        shapes.add(tuple((f["field_path"], f["order"]) for f in fields))
    assert (("state", "ASCENDING"), ("next_poll_at", "ASCENDING")) in shapes
    assert (("shard", "ASCENDING"), ("state", "ASCENDING"), ("next_poll_at", "ASCENDING")) in shapes


def test_ttl_policies_cover_finished_operations_claims_and_leases(infra):
    ttl = {(body["field"], body["collection"]) for body in instances(infra, "google_firestore_field").values()
           if "ttl_config" in body}
    assert ttl == {("expire_at", "${var.collection}"), ("expires_at", "${local.claims_collection}"),
                   ("expires_at", "${local.leases_collection}")}
    assert infra.locals["claims_collection"] == "${var.collection}_claims"
    assert infra.locals["leases_collection"] == "${var.collection}_leases"
    assert infra.locals["outbox_collection"] == "${var.collection}_outbox"


# --- Terraform itself ------------------------------------------------------------------


def test_versions_are_pinned_and_state_is_remote(infra):
    settings = {}
    for entry in infra.terraform:
        settings.update(entry)
    assert settings["required_version"] == ">= 1.5"
    providers = block(settings, "required_providers")
    google = providers["google"]
    assert google["source"] == "hashicorp/google"
    assert "<" in google["version"] and ">=" in google["version"]
    # State lives with the root example that calls the module (infra/backend.tf), not in the module.
    assert "backend" not in settings
    root = {}
    for entry in Infra(ROOT / "infra").terraform:
        root.update(entry)
    assert "gcs" in block(root, "backend")


def test_every_variable_is_typed_and_described(infra):
    for name, body in infra.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert body.get("description"), f"variable {name} has no description"
