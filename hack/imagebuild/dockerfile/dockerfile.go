// Package dockerfile reads the subset of Dockerfile syntax the project's Dockerfile uses (FROM ...
// AS, ARG, LABEL, WORKDIR, USER, COPY [--chmod], ENTRYPOINT in exec form) into what an image built
// from one of its stages holds, so that images built without a container engine follow it.
package dockerfile

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// File is a file a stage copies into the image.
type File struct {
	Src  string      // path relative to the build context, ARGs expanded
	Dest string      // absolute path in the image
	Mode os.FileMode // from --chmod; 0 when absent
}

// Spec is what an image built from one stage holds.
type Spec struct {
	Stage      string
	From       string // the first non-stage image of the chain (the base image)
	Labels     map[string]string
	User       string
	WorkDir    string
	Entrypoint []string
	Files      []File
}

type stage struct {
	name, from string
	args       map[string]string // ARG defaults declared in the stage
	cmds       []instruction
}

type instruction struct{ op, rest string }

// File is a parsed Dockerfile.
type Dockerfile struct {
	globals map[string]string
	stages  []*stage
}

// Parse parses a Dockerfile.
func Parse(src string) (*Dockerfile, error) {
	d := &Dockerfile{globals: map[string]string{}}
	var cur *stage
	for n, line := range logicalLines(src) {
		op, rest, _ := strings.Cut(line, " ")
		op = strings.ToUpper(op)
		rest = strings.TrimSpace(rest)
		switch {
		case op == "FROM":
			f := strings.Fields(rest)
			s := &stage{from: f[0], args: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("instruction %d: FROM %q", n+1, rest)
			}
			d.stages = append(d.stages, s)
			cur = s
		case op == "ARG" && cur == nil:
			k, v, _ := strings.Cut(rest, "=")
			d.globals[k] = v
		case cur == nil:
			return nil, fmt.Errorf("instruction %d: %s before FROM", n+1, op)
		case op == "ARG":
			k, v, _ := strings.Cut(rest, "=")
			cur.args[k] = v
		case op == "LABEL" || op == "WORKDIR" || op == "USER" || op == "COPY" || op == "ENTRYPOINT":
			cur.cmds = append(cur.cmds, instruction{op, rest})
		default:
			return nil, fmt.Errorf("instruction %d: %s is not supported by this reader", n+1, op)
		}
	}
	return d, nil
}

// Stages lists the named stages in order.
func (d *Dockerfile) Stages() []string {
	var names []string
	for _, s := range d.stages {
		if s.name != "" {
			names = append(names, s.name)
		}
	}
	return names
}

func (d *Dockerfile) stage(name string) *stage {
	for _, s := range d.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// Image is the Spec of the image built from stage name, with build args given (for example
// TARGETARCH); a stage that starts FROM another stage inherits what that stage set.
func (d *Dockerfile) Image(name string, buildArgs map[string]string) (*Spec, error) {
	s := d.stage(name)
	if s == nil {
		return nil, fmt.Errorf("the Dockerfile has no stage %q", name)
	}
	var chain []*stage
	for cur := s; cur != nil; cur = d.stage(cur.from) {
		chain = append([]*stage{cur}, chain...)
		if len(chain) > len(d.stages) {
			return nil, fmt.Errorf("stage %q: FROM loops", name)
		}
	}
	spec := &Spec{Stage: name, From: chain[0].from, Labels: map[string]string{}, WorkDir: "/"}
	for _, st := range chain {
		expand := func(v string) string {
			return os.Expand(v, func(k string) string {
				if x, ok := buildArgs[k]; ok {
					return x
				}
				if x, ok := st.args[k]; ok {
					return x
				}
				return d.globals[k]
			})
		}
		for _, in := range st.cmds {
			switch in.op {
			case "LABEL":
				kv, err := labels(in.rest)
				if err != nil {
					return nil, fmt.Errorf("stage %q: %w", st.name, err)
				}
				for k, v := range kv {
					spec.Labels[k] = v
				}
			case "WORKDIR":
				spec.WorkDir = expand(in.rest)
			case "USER":
				spec.User = expand(in.rest)
			case "ENTRYPOINT":
				var ep []string
				if err := json.Unmarshal([]byte(in.rest), &ep); err != nil {
					return nil, fmt.Errorf("stage %q: ENTRYPOINT must be in exec form: %w", st.name, err)
				}
				spec.Entrypoint = ep
			case "COPY":
				f := strings.Fields(expand(in.rest))
				var file File
				for len(f) > 0 && strings.HasPrefix(f[0], "--") {
					if v, ok := strings.CutPrefix(f[0], "--chmod="); ok {
						m, err := strconv.ParseUint(v, 8, 32)
						if err != nil {
							return nil, fmt.Errorf("stage %q: COPY %s: %w", st.name, f[0], err)
						}
						file.Mode = os.FileMode(m)
					} else {
						return nil, fmt.Errorf("stage %q: COPY flag %s is not supported", st.name, f[0])
					}
					f = f[1:]
				}
				if len(f) != 2 {
					return nil, fmt.Errorf("stage %q: COPY wants one source and one destination", st.name)
				}
				file.Src, file.Dest = f[0], f[1]
				spec.Files = append(spec.Files, file)
			}
		}
	}
	return spec, nil
}

// logicalLines joins continuation lines and drops comments and blank lines.
func logicalLines(src string) []string {
	var out []string
	var b strings.Builder
	for _, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || (t == "" && b.Len() == 0) {
			continue
		}
		if c, ok := strings.CutSuffix(t, "\\"); ok {
			b.WriteString(c)
			b.WriteByte(' ')
			continue
		}
		b.WriteString(t)
		if s := strings.TrimSpace(b.String()); s != "" {
			out = append(out, s)
		}
		b.Reset()
	}
	return out
}

// labels parses k="v" pairs (values quoted or bare).
func labels(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("LABEL %q: want key=value", s)
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("LABEL %s: %w", k, err)
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[strings.TrimSpace(k)] = v
		s = rest
	}
	return out, nil
}
