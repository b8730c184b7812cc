#!/usr/bin/env bash
# Lint the SAM template (template.yaml) offline, without AWS credentials.
#
# Why two steps: cfn-lint on a SAM template does not check the properties of
# AWS::Serverless::* resources (a misspelled `Architectures` or a bad `Runtime`
# passes), and neither does `sam validate --lint`. So we first expand the
# template with the SAM translator (the same code CloudFormation runs for
# `Transform: AWS::Serverless-2016-10-31`) and lint the resulting plain
# CloudFormation JSON, where every property of every generated resource
# (AWS::Lambda::Function, AWS::ApiGatewayV2::*, AWS::IAM::Role, ...) is checked.
# cfn-lint also runs on template.yaml itself for template-level checks.
#
# Usage: scripts/lint-template.sh [TEMPLATE]   (default: template.yaml)
# Env:   LINT_REGION  region used for the transform and the lint (default us-east-1)
#
# Tools live in a venv at target/lint-venv (created on first run, reused after),
# so nothing is installed globally. Needs python3 with venv support; on Debian
# the python3-venv package is installed with apt-get when it is missing.
# Output: target/template.cfn.json (the expanded CloudFormation template).
# Exits non-zero on any transform error or cfn-lint error/warning.
set -euo pipefail

# Pinned tool versions: bump deliberately, together.
SAM_TRANSLATOR_VERSION="1.115.0"
CFN_LINT_VERSION="1.58.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

template="${1:-template.yaml}"
region="${LINT_REGION:-us-east-1}"
venv="target/lint-venv"
out="target/template.cfn.json"
stamp="$venv/.lint-tools"
wanted="aws-sam-translator==$SAM_TRANSLATOR_VERSION cfn-lint==$CFN_LINT_VERSION"

[[ -f "$template" ]] || { echo "lint-template: $template not found" >&2; exit 2; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Debian splits venv/ensurepip out of python3 into python3-venv.
ensure_venv_support() {
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "lint-template: python3 has no venv support; installing python3-venv" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
}

# (Re)create the venv when it is missing or broken (e.g. python3 was upgraded).
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    ensure_venv_support
    rm -rf "$venv"
    mkdir -p target
    python3 -m venv "$venv"
fi

# Install the pinned tools unless this venv already has exactly these pins.
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
    echo "lint-template: installing $wanted into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "aws-sam-translator==$SAM_TRANSLATOR_VERSION" "cfn-lint==$CFN_LINT_VERSION"
    echo "$wanted" >"$stamp"
fi

# The transform needs a region (for pseudo parameters and the partition) but no
# credentials and no network: managed policy names resolve from the map bundled
# with aws-sam-translator, and the IAM fallback is a stub that knows nothing.
export AWS_DEFAULT_REGION="$region"
export AWS_EC2_METADATA_DISABLED=true

echo "== SAM transform: $template -> $out"
"$venv/bin/python" - "$template" "$out" <<'PY'
import json
import sys

import yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform


class CfnLoader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...)."""


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else "Fn::" + tag_suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


class OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which would call IAM."""

    def load(self):
        return {}


template_path, out_path = sys.argv[1], sys.argv[2]
with open(template_path, encoding="utf-8") as f:
    sam = yaml.load(f, Loader=CfnLoader)


def _placeholder_code_uri(props):
    # The translator accepts only s3:// code locations; `sam build`/`sam deploy`
    # upload the local folder and put its S3 address there. Do what
    # `sam validate` does: stand a placeholder in for a local path.
    uri = props.get("CodeUri") if isinstance(props, dict) else None
    if isinstance(uri, str) and not uri.startswith("s3://"):
        props["CodeUri"] = "s3://lint-placeholder/" + (uri.strip("./") or "code") + ".zip"


_placeholder_code_uri((sam.get("Globals") or {}).get("Function"))
for resource in (sam.get("Resources") or {}).values():
    if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
        _placeholder_code_uri(resource.get("Properties"))

try:
    cfn = transform(sam, {}, OfflinePolicyLoader())
except InvalidDocumentException as e:
    for cause in e.causes:
        print(f"SAM transform error: {cause.message}", file=sys.stderr)
    sys.exit(1)

with open(out_path, "w", encoding="utf-8") as f:
    json.dump(cfn, f, indent=2, sort_keys=True)
    f.write("\n")
print(f"wrote {out_path}: {len(cfn.get('Resources', {}))} resources")
PY

status=0
echo "== store choices: what each Store value deploys"
"$venv/bin/python" - "$out" <<'PY' || status=1
# Resolves the template's conditions for Store=DynamoDB and Store=Redis (no VPC, no secret ARN)
# and checks what each deploys: the table and its policy only with DynamoDB, exactly one store
# variable set in every function, no function in a VPC.
import json
import pathlib
import sys

cfn = json.load(open(sys.argv[1], encoding="utf-8"))
failures = []

def resolve(value, truth):
    if isinstance(value, dict):
        if "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            return resolve(yes if truth[name] else no, truth)
        resolved = {k: resolve(v, truth) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(value, list):
        return [v for v in (resolve(v, truth) for v in value) if v != {"Ref": "AWS::NoValue"}]
    return value

for store in ["DynamoDB", "Redis"]:
    truth = {"UseDynamoDB": store == "DynamoDB", "InVpc": False, "HasSecretsArn": False, "HasAlarms": False}
    resources = {
        name: resolve(resource, truth)
        for name, resource in cfn["Resources"].items()
        if truth.get(resource.get("Condition"), True)
    }
    fail = lambda what: failures.append(f"Store={store}: {what}")
    table = resources.get("TokenTable")
    if (table is not None) != (store == "DynamoDB"):
        fail("the table is deployed exactly with DynamoDB")
    if table:
        props = table["Properties"]
        if table.get("DeletionPolicy") != "Retain" or table.get("UpdateReplacePolicy") != "Retain":
            fail("the table must be retained")
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            fail("the table must bill on demand")
        if props.get("TimeToLiveSpecification") != {"AttributeName": "expires_at", "Enabled": True}:
            fail("TTL must be on expires_at")
        if not props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            fail("point-in-time recovery must be on")
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    # Each function has a role of its own; the exact table actions per function are checked by
    # tests/function_environments.rs against what each function calls.
    allowed = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"}
    roles = [function["Properties"]["Role"]["Fn::GetAtt"][0] for function in functions.values()]
    if len(set(roles)) != len(roles):
        fail(f"the functions share roles: {roles}")
    for role in roles:
        statements = [
            statement
            for policy in resources[role]["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        dynamodb = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
        if store == "DynamoDB":
            if len(dynamodb) != 1 or not set(dynamodb[0]["Action"]) <= allowed:
                fail(f"{role} must allow only item actions and Query: {dynamodb}")
            elif dynamodb[0]["Resource"] != {"Fn::GetAtt": ["TokenTable", "Arn"]}:
                fail(f"{role}: the table actions must be on the stack's table only: {dynamodb[0]['Resource']}")
        elif dynamodb:
            fail(f"{role}: no DynamoDB permission without the table: {dynamodb}")
    # One function per Lambda binary in src/bin/ (serve is local mode's).
    binaries = sorted(p.stem for p in pathlib.Path("src/bin").glob("*.rs") if p.stem != "serve")
    if len(functions) != len(binaries):
        fail(f"one function per binary expected ({binaries}), found {sorted(functions)}")
    for name, function in functions.items():
        props = function["Properties"]
        if props.get("VpcConfig"):
            fail(f"{name} is in a VPC")
        env = props["Environment"]["Variables"]
        table_var, redis_var = env.get("DYNAMODB_TABLE"), env.get("REDIS_URL")
        if store == "DynamoDB" and (table_var != {"Ref": "TokenTable"} or redis_var != ""):
            fail(f"{name}: DYNAMODB_TABLE={table_var!r} REDIS_URL={redis_var!r}")
        if store == "Redis" and (table_var != "" or redis_var != {"Ref": "RedisUrl"}):
            fail(f"{name}: DYNAMODB_TABLE={table_var!r} REDIS_URL={redis_var!r}")

for failure in failures:
    print(f"store choices: {failure}", file=sys.stderr)
if failures:
    sys.exit(1)
print("store choices: DynamoDB and Redis both deploy as intended")
PY
echo "== cfn-lint: $out (expanded CloudFormation)"
"$venv/bin/cfn-lint" --regions "$region" -- "$out" || status=1
echo "== cfn-lint: $template (SAM source)"
"$venv/bin/cfn-lint" --regions "$region" -- "$template" || status=1

if [[ $status -eq 0 ]]; then
    echo "lint-template: OK"
else
    echo "lint-template: FAILED" >&2
fi
exit "$status"
