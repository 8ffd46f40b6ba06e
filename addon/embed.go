// Package addon holds the agent manifests that the hub addon manager renders
// for every managed cluster. They are plain Go templates so that a reviewer
// can read exactly what lands on a spoke.
package addon

import "embed"

// TemplatesDir is the directory inside FS holding the agent templates.
const TemplatesDir = "manifests/templates"

//go:embed manifests/templates
var FS embed.FS
