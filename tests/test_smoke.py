def test_new_user_creates_key_and_validates_it(user, client):
    resp, plaintext = user.create_key(name="smoke", scopes=("keys:read", "usage:read"))
    assert resp.status_code == 200
    assert plaintext and plaintext.startswith("klk.")
    assert resp.headers["Cache-Control"] == "no-store"
    ok = client.post("/api/v1/keys/validate", json={"key": plaintext})
    assert ok.status_code == 200
    assert ok.json["valid"] is True
    assert ok.json["scopes"] == ["keys:read", "usage:read"]
    listing = client.get("/keys").get_data(as_text=True)
    assert "smoke" in listing
    assert plaintext not in listing
