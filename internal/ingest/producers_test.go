package ingest

import (
	"encoding/hex"
	"io/fs"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/commands"
)

func TestParseProducers(t *testing.T) {
	keyHash := HashAPIKey("k1")
	files := map[string]string{
		"/run/key":     "k2\n",
		"/run/secrets": "whsec_Zmlyc3Qtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhISE=\n\n",
	}
	read := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	ps, err := ParseProducers([]byte(`[{"name":"crm","api_key_sha256":["`+hex.EncodeToString(keyHash[:])+`"],"api_key_file":"/run/key",
		"webhook_secrets_file":"/run/secrets","types":["client.create"],"locations":[5]}]`), read)
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	if len(p.KeyHashes) != 2 || p.KeyHashes[1] != HashAPIKey("k2") || len(p.WebhookSecrets) != 1 ||
		string(p.WebhookSecrets[0]) != "first-webhook-secret-32-bytes!!!" || !p.allowsType(commands.TypeClientCreate) ||
		p.allowsType(commands.TypeClientDelete) || !p.allowsLocation(5) || p.allowsLocation(6) {
		t.Errorf("parsed %+v", p)
	}
	a := &authenticator{producers: ps}
	for key, want := range map[string]bool{"k1": true, "k2": true, "k3": false} {
		if got := a.byKey(key) != nil; got != want {
			t.Errorf("key %s: found %v", key, got)
		}
	}

	for name, tc := range map[string]string{
		"unknown field":     `[{"name":"a","api_key_sha256":["00"],"x":1}]`,
		"bad hash":          `[{"name":"a","api_key_sha256":["zz"]}]`,
		"no credentials":    `[{"name":"a"}]`,
		"bad type":          `[{"name":"a","api_key_file":"/run/key","types":["client.merge"]}]`,
		"missing file":      `[{"name":"a","api_key_file":"/nope"}]`,
		"bad secret":        `[{"name":"a","webhook_secrets":["whsec_!!"]}]`,
		"short secret":      `[{"name":"a","webhook_secrets":["whsec_c2hvcnQ="]}]`,
		"negative location": `[{"name":"a","api_key_file":"/run/key","locations":[-1]}]`,
	} {
		_, err := ParseProducers([]byte(tc), read)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "k2") || strings.Contains(err.Error(), "Zmlyc3Q") {
			t.Errorf("%s: error leaks a secret: %v", name, err)
		}
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("a config without producers and with auth on is valid")
	}
	if err := (Config{AuthDisabled: true}).Validate(); err != nil {
		t.Errorf("dev config: %v", err)
	}
	dup := Config{Producers: []Producer{{Name: "a", KeyHashes: [][32]byte{{}}}, {Name: "a", KeyHashes: [][32]byte{{}}}}}
	if err := dup.Validate(); err == nil {
		t.Error("duplicate producer names accepted")
	}
}

func TestAuthDisabled(t *testing.T) {
	a := &authenticator{disabled: true}
	id, err := a.authenticate(nil, nil)
	if err != nil || id.producer.Name != "anonymous" {
		t.Errorf("%+v %v", id, err)
	}
}
