/** The API's 400 messages, by form field. */

/**
 * Splits a 400 message ("body field 'name' must not be empty; streamUri must use one of…") into the parts about
 * each of ``fields`` (quoted as 'name' or 'config.name', or starting with the name) and the rest.
 */
export function splitMessage<F extends string>(
  message: string,
  fields: readonly F[],
): { byField: Map<F, string[]>; other: string[] } {
  const byField = new Map<F, string[]>();
  const other: string[] = [];
  for (const part of message.split("; ")) {
    const field = fields.find(
      (name) => part.includes(`'${name}'`) || part.includes(`'config.${name}'`) || new RegExp(`^${name}\\b`).test(part),
    );
    if (field === undefined) {
      other.push(part);
    } else {
      byField.set(field, [...(byField.get(field) ?? []), part]);
    }
  }
  return { byField, other };
}
