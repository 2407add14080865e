package sandbox

import (
	"net/http"
	"testing"
)

func TestAuthLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Users = append(c.Users, User{Login: "2fa@example.com", Password: "x", TwoFactor: true, Phone: "+13155550111"})
	})
	partnerOnly := map[string]string{"Authorization": "Bearer " + testPartner}

	t.Run("success", func(t *testing.T) {
		r := e.doWith(http.MethodPost, "/auth", map[string]string{"login": testLogin, "password": testPassword}, partnerOnly)
		wantSuccess(t, r, http.StatusCreated)
		d := r.data()
		if d["user_token"] != testToken {
			t.Errorf("user_token = %v, want %q", d["user_token"], testToken)
		}
		for _, k := range []string{"id", "name", "phone", "login", "email", "is_approved"} {
			if _, ok := d[k]; !ok {
				t.Errorf("data.%s missing", k)
			}
		}
	})
	t.Run("login by phone", func(t *testing.T) {
		r := e.doWith(http.MethodPost, "/auth", map[string]string{"login": "13155550175", "password": testPassword}, partnerOnly)
		wantSuccess(t, r, http.StatusCreated)
	})
	t.Run("two factor", func(t *testing.T) {
		r := e.doWith(http.MethodPost, "/auth", map[string]string{"login": "2fa@example.com", "password": "x"}, partnerOnly)
		wantSuccess(t, r, http.StatusOK)
		d := r.data()
		if d["uuid"] == nil || d["user_token"] != nil {
			t.Errorf("data = %v, want uuid and no token", d)
		}
		tr, _ := d["transport"].(map[string]any)
		if tr["type"] == nil || tr["recipient"] == nil || d["attempts_left"] == nil || d["refresh_ttl_sec"] == nil {
			t.Errorf("data = %v, want transport, attempts_left, refresh_ttl_sec", d)
		}
	})

	tests := []struct {
		name    string
		headers map[string]string
		body    any
		status  int
		message string
	}{
		{"wrong password", partnerOnly, map[string]string{"login": testLogin, "password": "nope"}, http.StatusUnauthorized, ""},
		{"unknown login", partnerOnly, map[string]string{"login": "who", "password": "nope"}, http.StatusUnauthorized, ""},
		{"missing password", partnerOnly, map[string]string{"login": testLogin}, http.StatusUnprocessableEntity, msgErrorOccurred},
		{"no authorization", map[string]string{"Authorization": ""}, map[string]string{"login": testLogin, "password": testPassword}, http.StatusUnauthorized, msgAuthNeeded},
		{"wrong partner", map[string]string{"Authorization": "Bearer nope"}, map[string]string{"login": testLogin, "password": testPassword}, http.StatusUnauthorized, msgAuthNeeded},
		{"malformed json", partnerOnly, "{", http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.doWith(http.MethodPost, "/auth", tt.body, tt.headers)
			wantError(t, r, tt.status, tt.message)
		})
	}
	if got := e.sb.Stats().Logins; got != 2 {
		t.Errorf("Stats().Logins = %d, want 2", got)
	}
}

func TestAuthorizationHeader(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Users = append(c.Users, User{Login: "limited", Password: "x", Token: "limited-token", Locations: []int64{7}})
	})
	id := e.sb.SeedClient(testLoc, ClientRecord{Name: "Ann", Phone: "79990001122"})
	path := "/client/4242/" + itoa(id)

	tests := []struct {
		name   string
		auth   string
		path   string
		status int
		msg    string
	}{
		{"comma space", "Bearer " + testPartner + ", User " + testToken, path, http.StatusOK, ""},
		{"comma no space", "Bearer " + testPartner + ",User " + testToken, path, http.StatusOK, ""},
		{"missing", "", path, http.StatusUnauthorized, msgAuthNeeded},
		{"partner only", "Bearer " + testPartner, path, http.StatusUnauthorized, msgAuthNeeded},
		{"wrong partner", "Bearer nope, User " + testToken, path, http.StatusUnauthorized, msgAuthNeeded},
		{"unknown user", "Bearer " + testPartner + ", User nope", path, http.StatusUnauthorized, msgAuthNeeded},
		{"malformed", "Token " + testPartner, path, http.StatusUnauthorized, msgAuthNeeded},
		{"location not allowed", "Bearer " + testPartner + ", User limited-token", path, http.StatusForbidden, msgAccessDenied},
		{"location allowed", "Bearer " + testPartner + ", User limited-token", "/client/7/" + itoa(id), http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.doWith(http.MethodGet, tt.path, nil, map[string]string{"Authorization": tt.auth})
			if tt.status == http.StatusOK {
				wantSuccess(t, r, tt.status)
				return
			}
			wantError(t, r, tt.status, tt.msg)
		})
	}
}

func TestRotateUserToken(t *testing.T) {
	e := newEnv(t, nil)
	id := e.sb.SeedClient(testLoc, ClientRecord{Name: "Ann", Phone: "79990001122"})
	path := "/client/4242/" + itoa(id)
	wantSuccess(t, e.do(http.MethodGet, path, nil), http.StatusOK)

	newTok, err := e.sb.RotateUserToken(testLogin)
	if err != nil {
		t.Fatalf("RotateUserToken: %v", err)
	}
	if newTok == testToken {
		t.Fatal("token did not change")
	}
	wantError(t, e.do(http.MethodGet, path, nil), http.StatusUnauthorized, msgAuthNeeded)

	r := e.doWith(http.MethodPost, "/auth", map[string]string{"login": testLogin, "password": testPassword},
		map[string]string{"Authorization": "Bearer " + testPartner})
	wantSuccess(t, r, http.StatusCreated)
	if r.data()["user_token"] != newTok {
		t.Fatalf("re-login token = %v, want %q", r.data()["user_token"], newTok)
	}
	wantSuccess(t, e.doWith(http.MethodGet, path, nil, map[string]string{"Authorization": userAuth(newTok)}), http.StatusOK)

	if _, err := e.sb.RotateUserToken("nobody"); err == nil {
		t.Error("RotateUserToken(unknown) = nil error")
	}
	if got := e.sb.Stats().Unauthorized; got != 1 {
		t.Errorf("Stats().Unauthorized = %d, want 1", got)
	}
}

func TestProtocolHeaders(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		method  string
		body    any
		headers map[string]string
		status  int
	}{
		{"no accept", http.MethodPost, map[string]string{"text": "x"}, map[string]string{"Accept": ""}, http.StatusBadRequest},
		{"json accept", http.MethodPost, map[string]string{"text": "x"}, map[string]string{"Accept": "application/json"}, http.StatusBadRequest},
		{"accept with charset", http.MethodPost, map[string]string{"name": "A", "phone": "79990001122"},
			map[string]string{"Accept": "application/vnd.api.v2+json; charset=utf-8"}, http.StatusCreated},
		{"no content type", http.MethodPost, map[string]string{"name": "A", "phone": "79990001133"},
			map[string]string{"Content-Type": ""}, http.StatusUnsupportedMediaType},
		{"text content type", http.MethodPost, map[string]string{"name": "A", "phone": "79990001133"},
			map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Authorization": userAuth(testToken)}
			for k, v := range tt.headers {
				h[k] = v
			}
			r := e.doWith(tt.method, "/clients/4242", tt.body, h)
			if tt.status < 300 {
				wantSuccess(t, r, tt.status)
				return
			}
			wantError(t, r, tt.status, "")
		})
	}
}
