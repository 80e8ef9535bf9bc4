// Types for the part of the `net-snmp` npm package (plain JavaScript) that the
// agent and the trap sender use.
declare module 'net-snmp' {
  import type dgram from 'node:dgram';

  export interface Varbind {
    oid: string;
    type: number;
    value: unknown;
    errorStatus?: number;
  }

  export interface SnmpUser {
    name: string;
    level: number;
    authProtocol?: string;
    authKey?: string;
    privProtocol?: string;
    privKey?: string;
  }

  export interface MibNode {
    address: number[];
    oid: string;
    value: unknown;
    valueType: number;
    getTableColumnFromInstanceNode(): number | null;
  }

  export interface MibRequest {
    oid: string;
    operation: number;
    instanceNode: MibNode;
    setValue?: unknown;
    setType?: number;
    testSet?: boolean;
    commitSet?: boolean;
    handler?: ((req: MibRequest) => void) & { name: string };
    done(error?: { errorStatus: number; type?: number; value?: unknown }): void;
  }

  export interface TableColumn {
    number: number;
    name: string;
    type: number;
    maxAccess: number;
    constraints?: { enumeration?: Record<string, string> };
  }

  export interface Provider {
    name: string;
    type: number;
    oid: string;
    maxAccess: number;
    scalarType?: number;
    tableColumns?: TableColumn[];
    tableIndex?: Array<{ columnName: string; foreign?: string }>;
    handler?: (req: MibRequest) => void;
  }

  export interface Mib {
    registerProvider(p: Provider): void;
    setScalarValue(name: string, value: unknown): void;
    addTableRow(name: string, row: unknown[]): void;
  }

  export interface Authorizer {
    addCommunity(community: string): void;
    addUser(user: SnmpUser): void;
    getAccessControlModel(): { setCommunityAccess(c: string, level: number): void; setUserAccess(u: string, level: number): void };
  }

  export interface RequestMessage {
    version: number;
    community?: string;
    user?: { name: string };
    pdu: { type: number };
  }

  export interface Agent {
    getMib(): Mib;
    getAuthorizer(): Authorizer;
    close(callback?: () => void): void;
    setBulkSetHandler?(cb: (reqs: MibRequest[], mib: Mib, testSet: boolean) => number): void;
    /** Internal: handles one decoded request (wrapped to learn who sent a set). */
    request?: (socket: dgram.Socket, message: RequestMessage, rinfo: dgram.RemoteInfo) => void;
  }

  export interface AgentOptions {
    port: number;
    address: string;
    transport: 'udp4' | 'udp6';
    disableAuthorization?: boolean;
    accessControlModelType: number;
    engineID?: string;
    dgramModule?: { createSocket(type: 'udp4' | 'udp6'): dgram.Socket };
  }

  export type AgentError = Error & { rinfo?: dgram.RemoteInfo };

  export interface Session {
    trap(oid: string, varbinds: Varbind[], options: { upTime?: number }, cb: (error: Error | null) => void): void;
    inform(oid: string, varbinds: Varbind[], options: { upTime?: number }, cb: (error: Error | null) => void): void;
    on(event: 'error', fn: (error: Error) => void): void;
    close(): void;
  }

  export interface SessionOptions {
    version?: number;
    transport?: 'udp4' | 'udp6';
    trapPort?: number;
    retries?: number;
    timeout?: number;
    engineID?: string;
  }

  interface NetSnmp {
    Version1: number;
    Version2c: number;
    Version3: number;
    ErrorStatus: Record<string, number> & Record<number, string>;
    ObjectType: Record<string, number>;
    PduType: Record<string, number>;
    MibProviderType: Record<string, number>;
    MaxAccess: Record<string, number>;
    SecurityLevel: Record<string, number>;
    AuthProtocols: Record<string, string>;
    PrivProtocols: Record<string, string>;
    AccessControlModelType: Record<string, number>;
    AccessLevel: Record<string, number>;
    createAgent(options: AgentOptions,
      callback: (error: AgentError | null, data?: { pdu?: { errorStatus?: number }; rinfo?: dgram.RemoteInfo }) => void): Agent;
    createSession(target: string, community: string, options: SessionOptions): Session;
    createV3Session(target: string, user: SnmpUser, options: SessionOptions): Session;
  }

  const snmp: NetSnmp;
  export default snmp;
}
