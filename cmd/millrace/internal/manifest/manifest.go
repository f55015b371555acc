// Package manifest reads Pipelines from YAML or JSON files the way kubectl does: several
// documents per file, unknown fields rejected.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Document is one Pipeline read from a file.
type Document struct {
	// Source names the file and document ("pipeline.yaml#2") for messages.
	Source   string
	Pipeline *v1alpha1.Pipeline
	// Object is the document as written, as the API server would receive it: the fields that
	// the typed Pipeline drops (a zero behind omitempty) are still there, for validation.
	Object map[string]any
}

// Read reads every Pipeline of the files; "-" is stdin. A Pipeline without a namespace gets
// namespace, as kubectl gives it the current one.
func Read(files []string, stdin io.Reader, namespace string) ([]Document, error) {
	if len(files) == 0 {
		return nil, errors.New("no pipeline file given: use -f FILE (or -f - for stdin)")
	}
	var out []Document
	for _, f := range files {
		var r io.Reader
		if f == "-" {
			r = stdin
		} else {
			file, err := os.Open(f)
			if err != nil {
				return nil, fmt.Errorf("read pipeline: %w", err)
			}
			defer file.Close()
			r = file
		}
		docs, err := decode(f, r, namespace)
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Pipeline found in %v", files)
	}
	return out, nil
}

// ReadOne reads exactly one Pipeline.
func ReadOne(file string, stdin io.Reader, namespace string) (*v1alpha1.Pipeline, error) {
	d, err := ReadOneDocument(file, stdin, namespace)
	if err != nil {
		return nil, err
	}
	return d.Pipeline, nil
}

// ReadOneDocument reads exactly one Pipeline, with its object as written.
func ReadOneDocument(file string, stdin io.Reader, namespace string) (Document, error) {
	docs, err := Read([]string{file}, stdin, namespace)
	if err != nil {
		return Document{}, err
	}
	if len(docs) != 1 {
		return Document{}, fmt.Errorf("%s holds %d Pipelines; this command takes one", file, len(docs))
	}
	return docs[0], nil
}

func decode(name string, r io.Reader, namespace string) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []Document
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		source := name
		if i > 1 || len(out) > 0 {
			source = fmt.Sprintf("%s#%d", name, i)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if meta.Kind != "Pipeline" || meta.APIVersion != v1alpha1.GroupVersion.String() {
			return nil, fmt.Errorf("%s: want kind Pipeline of %s, got kind %q of %q", source, v1alpha1.GroupVersion, meta.Kind, meta.APIVersion)
		}
		p := &v1alpha1.Pipeline{}
		// kubectl's default field validation is Strict: a misspelt field is an error, not a
		// silently ignored setting.
		if err := yaml.UnmarshalStrict(raw, p); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		// The object as written, with integers as int64 like the API server decodes them.
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		var obj map[string]any
		if err := utiljson.Unmarshal(js, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if p.Namespace == "" {
			p.Namespace = namespace
			if md, ok := obj["metadata"].(map[string]any); ok {
				md["namespace"] = namespace
			}
		}
		out = append(out, Document{Source: source, Pipeline: p, Object: obj})
	}
}

func stripComments(raw []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
