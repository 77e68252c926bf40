{{- /*
Helpers that turn Go doc comments into Markdown. Doc comments are wrapped at 100 columns;
Markdown paragraphs join the lines again, table cells need them on one line.
*/ -}}

{{- /* paragraphs: a doc comment as Markdown paragraphs. */ -}}
{{- define "paragraphs" -}}
{{- . | replace "<" "&lt;" | trim -}}
{{- end -}}

{{- /* cell: a doc comment on one line, for a table cell. */ -}}
{{- define "cell" -}}
{{- $s := . | trim | replace "|" "\\|" | replace "<" "&lt;" -}}
{{- $s = regexReplaceAll "\\n[ \\t]*\\n" $s "<br /><br />" -}}
{{- $s | replace "\n" " " -}}
{{- end -}}

{{- /* sentenceCase: the text with its first letter in upper case. */ -}}
{{- define "sentenceCase" -}}
{{- printf "%s%s" (substr 0 1 . | upper) (substr 1 -1 .) -}}
{{- end -}}

{{- /*
firstSentence: what a kind is, from the start of its doc comment: "ReplicationPeer is a
partner site: another …" becomes "A partner site".
*/ -}}
{{- define "firstSentence" -}}
{{- $s := regexReplaceAll "^[A-Za-z]+ is " (. | trim | replace "\n" " ") "" -}}
{{- template "sentenceCase" (regexFind "^[^:.]*" $s) -}}
{{- end -}}

{{- /*
constDoc: the doc comment of an enum constant without the constant's Go name: "FailoverManual
never promotes on its own" becomes "Never promotes on its own", "PhasePending means the service
has not been mirrored yet" becomes "The service has not been mirrored yet".
*/ -}}
{{- define "constDoc" -}}
{{- $s := regexReplaceAll "^[A-Za-z0-9]+ (is |means )?" (trim .) "" | replace "|" "\\|" | replace "<" "&lt;" -}}
{{- $s = regexReplaceAll "\\n[ \\t]*\\n" $s "<br /><br />" | replace "\n" " " -}}
{{- template "sentenceCase" $s -}}
{{- end -}}
