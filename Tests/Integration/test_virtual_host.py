"""Virtual-host style addressing: with `s3.base_domain` set, `BUCKET.<domain>` hosts address the
bucket and the whole path is the key; path-style keeps working beside it."""
import http.client

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def vhost_request(node, method, bucket, key, body=b""):
    port = node.endpoint.rsplit(":", 1)[1]
    host = f"{bucket}.s3.test:{port}"
    req = AWSRequest(method=method, url=f"http://{host}/{key}", data=body, headers={"Host": host})
    S3SigV4Auth(Credentials(node.access_key, node.secret_key), "s3", node.region).add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    try:
        conn.request(method, f"/{key}", body=body, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_virtual_host_style_addressing(node_factory):
    node = node_factory("vhost")
    node.stop()
    text = node.config_path.read_text()
    node.config_path.write_text(text.replace('region = "us-east-1"\n', 'region = "us-east-1"\nbase_domain = "s3.test"\n'))
    node.start()
    s3 = node.client()
    s3.create_bucket(Bucket="vbucket")

    status, _ = vhost_request(node, "PUT", "vbucket", "dir/hello.txt", b"hello vhost")
    assert status == 200
    # Path-style sees the object the virtual-host request stored, under the same key.
    assert s3.get_object(Bucket="vbucket", Key="dir/hello.txt")["Body"].read() == b"hello vhost"
    status, body = vhost_request(node, "GET", "vbucket", "dir/hello.txt")
    assert (status, body) == (200, b"hello vhost")
    status, body = vhost_request(node, "GET", "nosuchbucket", "dir/hello.txt")
    assert status == 404 and b"NoSuchBucket" in body
