package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// webhookSecretPrefix starts every Standard Webhooks secret.
const webhookSecretPrefix = "whsec_"

// Producer is one caller of the HTTP API: how it authenticates and what it
// may send. Build producers with ParseProducers or in Go; Config.Validate
// checks them.
type Producer struct {
	// Name identifies the producer in logs, metrics and the
	// Altegio-Producer header of its commands. Required, unique.
	Name string
	// KeyHashes are SHA-256 digests of the producer's API keys (sent as
	// "Authorization: Bearer <key>"). Several allow key rotation.
	KeyHashes [][sha256.Size]byte
	// WebhookSecrets are the decoded Standard Webhooks secrets (the bytes
	// after "whsec_"). Several allow rotation: a signature by any of them
	// is accepted.
	WebhookSecrets [][]byte
	// Types are the command types the producer may send; empty means all.
	Types []commands.Type
	// Locations are the location ids the producer may act in; empty means
	// all.
	Locations []int64
	// Read allows the producer to read (GET /v1/locations/…) in its
	// Locations. Writing does not imply it.
	Read bool
}

// validate reports what is wrong with p.
func (p Producer) validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if len(p.KeyHashes) == 0 && len(p.WebhookSecrets) == 0 {
		errs = append(errs, fmt.Errorf("%q has neither an api key nor a webhook secret", p.Name))
	}
	for i, s := range p.WebhookSecrets {
		if len(s) < 16 {
			errs = append(errs, fmt.Errorf("%q: webhook secret %d is shorter than 16 bytes", p.Name, i))
		}
	}
	for _, t := range p.Types {
		if !t.Valid() {
			errs = append(errs, fmt.Errorf("%q: unknown command type %q", p.Name, t))
		}
	}
	for _, l := range p.Locations {
		if l <= 0 {
			errs = append(errs, fmt.Errorf("%q: location %d is not positive", p.Name, l))
		}
	}
	return errors.Join(errs...)
}

// allowsType reports whether p may send commands of type t.
func (p *Producer) allowsType(t commands.Type) bool {
	return len(p.Types) == 0 || slices.Contains(p.Types, t)
}

// allowsLocation reports whether p may act in location id.
func (p *Producer) allowsLocation(id int64) bool {
	return len(p.Locations) == 0 || slices.Contains(p.Locations, id)
}

// ProducerSpec is the JSON form of one producer, as read by
// ParseProducers. Secrets can be given inline or, better, as files (the
// *_file fields) so that the JSON itself holds none.
//
//	[
//	  {
//	    "name": "crm",
//	    "api_key_sha256": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
//	    "api_key_file": "/run/secrets/crm_api_key",
//	    "webhook_secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
//	    "webhook_secrets_file": "/run/secrets/crm_webhook_secrets",
//	    "types": ["client.create", "client.update"],
//	    "locations": [123, 456],
//	    "read": true
//	  }
//	]
//
// api_key_sha256 holds hex SHA-256 digests of API keys
// (printf %s "$KEY" | sha256sum). api_key_file names a file holding one raw
// key per line; the keys are hashed when read and never kept.
// webhook_secrets and the lines of webhook_secrets_file are "whsec_" plus
// the base64 secret. Omitted or empty types and locations mean all. read
// lets the producer read clients, comments, files and visits in its
// locations (default false: writing does not imply reading).
type ProducerSpec struct {
	Name               string   `json:"name"`
	APIKeySHA256       []string `json:"api_key_sha256,omitempty"`
	APIKeyFile         string   `json:"api_key_file,omitempty"`
	WebhookSecrets     []string `json:"webhook_secrets,omitempty"`
	WebhookSecretsFile string   `json:"webhook_secrets_file,omitempty"`
	Types              []string `json:"types,omitempty"`
	Locations          []int64  `json:"locations,omitempty"`
	Read               bool     `json:"read,omitempty"`
}

// ParseProducers decodes a JSON array of ProducerSpec (unknown fields are
// rejected) and resolves it into producers, reading the *_file fields with
// readFile (os.ReadFile in production). It returns an error naming the
// producer and field at fault; the error never contains a secret.
func ParseProducers(data []byte, readFile func(string) ([]byte, error)) ([]Producer, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var specs []ProducerSpec
	if err := dec.Decode(&specs); err != nil {
		return nil, fmt.Errorf("parse producers: %w", err)
	}
	producers := make([]Producer, 0, len(specs))
	for i, s := range specs {
		p, err := s.resolve(readFile)
		if err != nil {
			return nil, fmt.Errorf("producer %d (%q): %w", i, s.Name, err)
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("producer %d: %w", i, err)
		}
		producers = append(producers, p)
	}
	return producers, nil
}

func (s ProducerSpec) resolve(readFile func(string) ([]byte, error)) (Producer, error) {
	p := Producer{Name: s.Name, Locations: s.Locations, Read: s.Read}
	for j, h := range s.APIKeySHA256 {
		sum, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil || len(sum) != sha256.Size {
			return Producer{}, fmt.Errorf("api_key_sha256[%d] is not 64 hex digits", j)
		}
		p.KeyHashes = append(p.KeyHashes, [sha256.Size]byte(sum))
	}
	if s.APIKeyFile != "" {
		lines, err := readLines(readFile, s.APIKeyFile)
		if err != nil {
			return Producer{}, fmt.Errorf("api_key_file: %w", err)
		}
		for _, key := range lines {
			p.KeyHashes = append(p.KeyHashes, sha256.Sum256([]byte(key)))
		}
	}
	secrets := slices.Clone(s.WebhookSecrets)
	if s.WebhookSecretsFile != "" {
		lines, err := readLines(readFile, s.WebhookSecretsFile)
		if err != nil {
			return Producer{}, fmt.Errorf("webhook_secrets_file: %w", err)
		}
		secrets = append(secrets, lines...)
	}
	for j, sec := range secrets {
		key, err := ParseWebhookSecret(sec)
		if err != nil {
			return Producer{}, fmt.Errorf("webhook secret %d: %w", j, err)
		}
		p.WebhookSecrets = append(p.WebhookSecrets, key)
	}
	for _, t := range s.Types {
		p.Types = append(p.Types, commands.Type(t))
	}
	return p, nil
}

// readLines returns the non-empty, trimmed lines of a file.
func readLines(readFile func(string) ([]byte, error), path string) ([]string, error) {
	if readFile == nil {
		return nil, errors.New("no file reader")
	}
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var lines []string
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return lines, nil
}

// ParseWebhookSecret decodes a Standard Webhooks secret, "whsec_" followed
// by standard base64, into the HMAC key. The prefix is optional. The error
// does not contain the secret.
func ParseWebhookSecret(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), webhookSecretPrefix)
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not whsec_ followed by base64")
	}
	if len(key) == 0 {
		return nil, errors.New("empty secret")
	}
	return key, nil
}

// HashAPIKey returns the SHA-256 digest of an API key, the form in which
// Producer.KeyHashes stores it.
func HashAPIKey(key string) [sha256.Size]byte {
	return sha256.Sum256([]byte(key))
}
