"""Writes N expired-token failures, each of its own group (account + role + session), as uncompressed trail
files of 5,000 records under OUT: the input of bench/groups.sh. Fields are as long as real ones (an
assumed-role ARN with its session issuer, an access key, a boto3 user agent, an event ID).

    python3 bench/groups.py N OUT
"""

import os
import sys

PER_FILE = 5_000
ACCOUNTS = [f"{100000000000 + 7919 * i:012d}" for i in range(12)]
ROLES = [f"{team}-{kind}-role-{i:02d}" for team in ("orders", "billing", "search", "ingest", "reports")
         for kind in ("etl", "api", "worker", "batch") for i in range(50)]
SERVICES = [("s3.amazonaws.com", "GetObject"), ("dynamodb.amazonaws.com", "PutItem"),
            ("sqs.amazonaws.com", "ReceiveMessage"), ("kms.amazonaws.com", "Decrypt"),
            ("lambda.amazonaws.com", "Invoke")]
AGENT = ("Boto3/1.34.{v} md/Botocore#1.34.{v} ua/2.0 os/linux#5.10.219-208.866.amzn2.x86_64 "
         "md/arch#x86_64 lang/python#3.11.{p} md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.{v}")
ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
T0 = 1_793_606_400  # 2026-11-02T08:00:00Z


def key(i, width):
    out = []
    x = i * 2654435761 + 97
    for _ in range(width):
        out.append(ALPHA[x & 31])
        x = (x >> 5) ^ (x * 40503 + 11)
        x &= (1 << 64) - 1
    return "".join(out)


def iso(t):
    day, rem = divmod(t - T0, 86400)
    h, rem = divmod(rem + 8 * 3600, 3600)
    day += h // 24
    h %= 24
    m, s = divmod(rem, 60)
    return f"2026-11-{2 + day:02d}T{h:02d}:{m:02d}:{s:02d}Z"


def session_name(i, role):
    """Distinct for every i, in the shapes real session names take (so that they fold into workloads)."""
    h = f"{i * 2654435761 & 0xFFFFFFFFFFFFFFFF:016x}"
    shape = i % 4
    if shape == 0:
        return f"botocore-session-{1793606400 + i}"
    if shape == 1:
        return f"i-0{h[:1]}{i:016x}"
    if shape == 2:
        return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-a{h[13:16]}-{i:012x}"
    pod = key(i // 4, 5).lower().replace("2", "x")
    return f"{role.split('-')[0]}-{key(i, 9).lower()}9-{pod}"


def record(i):
    account = ACCOUNTS[i % len(ACCOUNTS)]
    role = ROLES[(i // len(ACCOUNTS)) % len(ROLES)]
    session = session_name(i, role)
    source, name = SERVICES[i % len(SERVICES)]
    t = T0 + 3600 + (i * 37) % (3 * 86400)
    created = t - 3600 - (i % 30)
    role_id = "AROA" + key(i // len(ACCOUNTS) % len(ROLES), 17)
    h = f"{i * 2246822519 & 0xFFFFFFFFFFFF:012x}"
    return (
        '{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole",'
        f'"principalId":"{role_id}:{session}","arn":"arn:aws:sts::{account}:assumed-role/{role}/{session}",'
        f'"accountId":"{account}","accessKeyId":"ASIA{key(i, 16)}","sessionContext":{{"sessionIssuer":'
        f'{{"type":"Role","principalId":"{role_id}","arn":"arn:aws:iam::{account}:role/service/{role}",'
        f'"accountId":"{account}","userName":"{role}"}},"attributes":{{"creationDate":"{iso(created)}",'
        '"mfaAuthenticated":"false"}}},'
        f'"eventTime":"{iso(t)}","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1",'
        f'"sourceIPAddress":"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",'
        f'"userAgent":"{AGENT.format(v=i % 90, p=i % 9)}","errorCode":"ExpiredToken",'
        '"errorMessage":"The provided token has expired.","requestParameters":null,"responseElements":null,'
        f'"requestID":"{h[:8].upper()}{key(i, 8)}","eventID":"{h[:8]}-{h[8:12]}-4{h[1:4]}-a{h[5:8]}-{h}",'
        '"readOnly":true,"eventType":"AwsApiCall","managementEvent":false,'
        f'"recipientAccountId":"{account}","eventCategory":"Data"}}'
    )


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for start in range(0, n, PER_FILE):
        path = os.path.join(out, f"groups-{start // PER_FILE:05d}.json")
        with open(path, "w") as f:
            f.write('{"Records":[')
            f.write(",".join(record(i) for i in range(start, min(n, start + PER_FILE))))
            f.write("]}\n")


if __name__ == "__main__":
    main()
