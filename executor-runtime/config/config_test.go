package config

import (
	"strings"
	"testing"
)

func TestValidateSASL(t *testing.T) {
	cases := []struct {
		reason string
		sasl   *SASL
		want   string // "" for valid
	}{
		{"no SASL", nil, ""},
		{"username in the config (Strimzi)", &SASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordFile: "/p"}, ""},
		{"username from a file (user-supplied Secret)", &SASL{Mechanism: "SCRAM-SHA-512", UsernameFile: "/u", PasswordFile: "/p"}, ""},
		{"neither username nor usernameFile", &SASL{Mechanism: "SCRAM-SHA-512", PasswordFile: "/p"}, "exactly one of username and usernameFile"},
		{"both username and usernameFile", &SASL{Mechanism: "SCRAM-SHA-512", Username: "u", UsernameFile: "/u", PasswordFile: "/p"}, "exactly one of username and usernameFile"},
		{"no password file", &SASL{Mechanism: "SCRAM-SHA-512", Username: "u"}, "passwordFile is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			e := &Executor{
				APIVersion: APIVersion, Kafka: Kafka{BootstrapServers: []string{"k:9092"}, SASL: tc.sasl},
				Inputs:  []Input{{Stream: "in", Topic: "in", DeadLetterTopic: "in.dlq"}},
				GroupID: "g",
			}
			e.Default()
			err := e.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRetireSection(t *testing.T) {
	base := func() *Executor {
		return &Executor{
			APIVersion: APIVersion, Kafka: Kafka{BootstrapServers: []string{"k:9092"}},
			Inputs:  []Input{{Stream: "in", Topic: "in", DeadLetterTopic: "in.dlq"}},
			GroupID: "g",
		}
	}
	e := base()
	e.Retire = &Retire{Since: "2026-12-01T10:00:00.5Z", Drain: true, DeleteGroup: true}
	b, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"retire": {`) || !strings.Contains(string(b), `"deleteGroup": true`) {
		t.Fatalf("executor.json lacks the retire section:\n%s", b)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if *got.Retire != *e.Retire {
		t.Fatalf("retire %+v read back as %+v", e.Retire, got.Retire)
	}
	if since, _ := got.Retire.SinceTime(); since.UnixMilli() != 1796119200500 {
		t.Fatalf("since %s read as %d ms", got.Retire.Since, since.UnixMilli())
	}
	// Without retire, the key is absent (an older runtime reads the file unchanged).
	if b, _ := Marshal(base()); strings.Contains(string(b), "retire") {
		t.Fatalf("executor.json without a retirement mentions it:\n%s", b)
	}
	e.Retire.Since = "yesterday"
	e.Default()
	if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "retire.since") {
		t.Fatalf("Validate with since %q: %v, want an error about retire.since", e.Retire.Since, err)
	}
}
