"""The app's request cycle shortcuts (app/flask_app.py) change nothing a client sees:
the URL adapter kept per request line still follows the host, path and method, and a
body handed to the server as its list is the same body (none for HEAD)."""

from __future__ import annotations

from flask import Flask, url_for


def test_kept_url_adapters_follow_host_path_and_method(app: Flask) -> None:
    app.add_url_rule("/t/where", "where", lambda: url_for("where", _external=True))
    client = app.test_client()
    for _ in range(2):  # the second round is answered from the kept adapters
        assert client.get("/t/where", base_url="http://a.test").text == "http://a.test/t/where"
        assert client.get("/t/where", base_url="http://b.test").text == "http://b.test/t/where"
        assert client.get("/t/where?x=1", base_url="https://b.test").text == (
            "https://b.test/t/where"
        )
        assert client.get("/t/nowhere").status_code == 404
        assert client.post("/t/where").status_code == 405


def test_a_body_of_one_bytes_string_is_passed_as_it_is(app: Flask) -> None:
    client = app.test_client()
    refused = client.post("/api/v1/keys/validate", json={"key": "nope"})
    assert refused.status_code == 401 and refused.json["valid"] is False
    assert int(refused.headers["Content-Length"]) == len(refused.data)
    page = client.get("/login")
    head = client.head("/login")
    assert page.status_code == head.status_code == 200 and page.data and head.data == b""
